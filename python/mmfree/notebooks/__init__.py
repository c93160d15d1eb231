"""mmfree notebooks for the board, delivered by `pynq get-notebooks mmfree` (entry point `pynq.notebooks`)."""
