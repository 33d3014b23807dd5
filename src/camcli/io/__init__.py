"""Files in and out: discovering inputs, decoding them, naming and writing outputs, the manifest."""
