"""The networks: the IP2P wrapper, model loading, attention processors, the segmenter, CLIP, and every tiny and
full-size random-weight builder."""
