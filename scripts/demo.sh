#!/usr/bin/env bash
# The main job on the bundled scene: reconstruct it, edit it by instruction with WYS, render a video.
# Offline on CPU with the tiny random-weight IP2P by default (the edit itself is then noise: the run shows the
# machinery). With real weights on a GPU: DEVICE=cuda MODEL=timbrooks/instruct-pix2pix bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.venv/bin
DEVICE=${DEVICE:-cpu}
MODEL=${MODEL:-tiny}
PROMPT=${PROMPT:-turn the red ball blue}
DATA=data/synthetic
STAMP=$(date +%Y-%m-%d_%H%M%S)
RUN=outputs/synthetic/wys/$STAMP
VIDEO=renders/wys_$STAMP.mp4

if [ "$DEVICE" = cpu ]; then
    # The light CPU config (methods/configs.py: LIGHT_CPU_ARGS): ~0.3 s per iteration here.
    read -r -a SETTINGS <<< "$("$BIN/python" -c 'from nerf_edit_methods.configs import LIGHT_CPU_ARGS; print(" ".join(LIGHT_CPU_ARGS))')"
    SETTINGS+=(--max-num-iterations 500 --pipeline.edit-start-step 300 --pipeline.edit-rate 5 --pipeline.relevance-warmup-steps 20)
else
    SETTINGS=(--machine.device-type cuda --vis viewer+tensorboard --viewer.quit-on-train-completion True
              --max-num-iterations 6000 --pipeline.edit-start-step 2000)
fi

echo "demo: training and editing $DATA with \"$PROMPT\" (model $MODEL, $DEVICE) into $RUN"
"$BIN/ns-train" wys --data "$DATA" --output-dir outputs --timestamp "$STAMP" \
    --pipeline.prompt "$PROMPT" --pipeline.editor-model "$MODEL" \
    --steps-per-eval-batch 1000000 --steps-per-eval-image 1000000 --steps-per-eval-all-images 1000000 \
    "${SETTINGS[@]}"

echo "demo: rendering the edited scene and its relevance to $VIDEO"
"$BIN/ns-render" interpolate --load-config "$RUN/config.yml" --rendered-output-names rgb relevance \
    --interpolation-steps 6 --frame-rate 12 --output-path "$VIDEO"
echo "demo: done. Edited views: $RUN/edits/images  video: $VIDEO"
