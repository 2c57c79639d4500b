#!/usr/bin/env bash
# The main job on the bundled scene, offline: reconstruct it (wys-reconstruct), edit it by instruction from that
# checkpoint (wys --load-dir), render a video of the edited scene and its relevance.
# The editor is InstructPix2Pix when its weights are in the Hugging Face cache, otherwise the rule-based colorkey
# demonstration editor (not IP2P), so the video shows what the method promises: the ball turns blue in 3D and
# the rest stays. Force one with MODEL=<hub id|folder|tiny> (IP2P) or EDITOR=colorkey.
# GPU with real weights: DEVICE=cuda MODEL=timbrooks/instruct-pix2pix bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.venv/bin
DEVICE=${DEVICE:-cpu}
MODEL=${MODEL:-auto}
EDITOR=${EDITOR:-auto}
PROMPT=${PROMPT:-turn the red ball blue}
DATA=data/synthetic
STAMP=$(date +%Y-%m-%d_%H%M%S)
BASE=outputs/synthetic/wys-reconstruct/$STAMP
RUN=outputs/synthetic/wys/$STAMP
VIDEO=renders/wys_$STAMP.mp4

if [ "$EDITOR" = auto ]; then
    if [ "$MODEL" = auto ]; then
        MODEL=$("$BIN/python" -c 'from nerf_edit.models.loading import IP2P_MODEL_ID; print(IP2P_MODEL_ID)')
        # The hub's own offline cache lookup: a path when the model's index is cached, nothing is downloaded.
        if "$BIN/python" -c 'import sys; from huggingface_hub import try_to_load_from_cache
sys.exit(0 if isinstance(try_to_load_from_cache(sys.argv[1], "model_index.json"), str) else 1)' "$MODEL"; then
            EDITOR=relevance
        else
            EDITOR=colorkey
        fi
    else
        EDITOR=relevance
    fi
fi
if [ "$EDITOR" = colorkey ]; then
    echo "demo: editor: colorkey, a rule-based demonstration editor (not InstructPix2Pix; its weights are not in the Hugging Face cache)"
else
    echo "demo: editor: $EDITOR with InstructPix2Pix weights $MODEL"
fi

if [ "$DEVICE" = cpu ]; then
    # The light CPU config and the demo's schedule (methods/configs.py): a few minutes on 2 cores.
    read -r -a LIGHT <<< "$("$BIN/python" -c 'from nerf_edit_methods.configs import LIGHT_CPU_ARGS; print(" ".join(LIGHT_CPU_ARGS))')"
    read -r -a RECONSTRUCT <<< "$("$BIN/python" -c 'from nerf_edit_methods.configs import DEMO_CPU_RECONSTRUCT_ARGS; print(" ".join(DEMO_CPU_RECONSTRUCT_ARGS))')"
    read -r -a EDIT <<< "$("$BIN/python" -c 'from nerf_edit_methods.configs import DEMO_CPU_EDIT_ARGS; print(" ".join(DEMO_CPU_EDIT_ARGS))')"
    RECONSTRUCT=("${LIGHT[@]}" "${RECONSTRUCT[@]}")
    EDIT=("${LIGHT[@]}" "${EDIT[@]}")
else
    RECONSTRUCT=(--machine.device-type cuda --vis tensorboard --max-num-iterations 2000)
    EDIT=(--machine.device-type cuda --vis viewer+tensorboard --viewer.quit-on-train-completion True
          --max-num-iterations 4000)
fi
QUIET=(--steps-per-eval-batch 1000000 --steps-per-eval-image 1000000 --steps-per-eval-all-images 1000000)

echo "demo: reconstructing $DATA ($DEVICE) into $BASE"
"$BIN/ns-train" wys-reconstruct --data "$DATA" --output-dir outputs --timestamp "$STAMP" "${QUIET[@]}" "${RECONSTRUCT[@]}"

echo "demo: editing it with \"$PROMPT\" into $RUN"
"$BIN/ns-train" wys --data "$DATA" --output-dir outputs --timestamp "$STAMP" --load-dir "$BASE/nerfstudio_models" \
    --pipeline.prompt "$PROMPT" --pipeline.editor "$EDITOR" --pipeline.editing.model "$MODEL" "${QUIET[@]}" "${EDIT[@]}"

echo "demo: rendering the edited scene and its relevance to $VIDEO"
"$BIN/ns-render" interpolate --load-config "$RUN/config.yml" --rendered-output-names rgb relevance \
    --interpolation-steps 6 --frame-rate 12 --output-path "$VIDEO"
echo "demo: done. Edited views: $RUN/edits/images  video: $VIDEO"
