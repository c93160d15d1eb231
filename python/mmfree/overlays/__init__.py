"""mmfree overlays: where pynq looks for <overlay>.bit + <overlay>.hwh (entry point `pynq.overlays`).

Bitstreams are not in git. Build one with `make overlay BOARD=<board>` on a workstation with Vivado
(it copies mmfree_<board>.bit/.hwh here), or download it as manifest.json says once published, then
copy both files, same stem, into this folder on the board. mmfree.boards.overlay_path(board) finds
them and says what to do when they are missing. See docs/boards.md.
"""
