"""The engine's decode graphs: the checkpoint read and checked, the graph built by hand, 8/4-bit
weights, their gate (run through the engine's `DecodeRunner`), and `decode.json`."""
