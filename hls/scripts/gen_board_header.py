#!/usr/bin/env python3
"""Write build/<board>/mmfree_board.h from python/mmfree/data/boards.json (the one place).

    gen_board_header.py BOARD OUT.h

Defines the compile-time constants of one board: weight ports, port width, clock, maxima.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BOARDS = os.path.join(HERE, "..", "..", "python", "mmfree", "data", "boards.json")


def header(board: str) -> str:
    with open(BOARDS, "r", encoding="utf-8") as f:
        boards = json.load(f)
    if board not in boards or board.startswith("_"):
        names = ", ".join(k for k in boards if not k.startswith("_"))
        sys.exit("unknown board %r; boards.json knows: %s" % (board, names))
    b = boards[board]
    fl, sl = int(b["float_lanes"]), int(b["sigmoid_lanes"])
    ports, bits = int(b["weight_ports"]), int(b["port_bits"])
    uram = int(b["resources"]["uram"]) > 0
    guard = "MMFREE_BOARD_H"
    lines = [
        "/* Generated from python/mmfree/data/boards.json by hls/scripts/gen_board_header.py: do not edit. */",
        "#ifndef " + guard, "#define " + guard,
        '#define MMFREE_BOARD_NAME "%s"' % board,
        '#define MMFREE_PART "%s"' % b["part"],
        "#define MMFREE_CLOCK_MHZ %d" % int(b["clock_mhz"]),
        "#define MMFREE_CLOCK_KHZ %d" % int(round(float(b["clock_mhz"]) * 1000)),
        "#define MMFREE_WEIGHT_PORTS %d" % int(b["weight_ports"]),
        "#define MMFREE_PORT_BITS %d" % int(b["port_bits"]),
        "#define MMFREE_MAX_D %d" % int(b["max_d"]),
        "#define MMFREE_MAX_INTER %d" % int(b["max_inter"]),
        "#define MMFREE_MAX_VOCAB %d" % int(b["max_vocab"]),
        "#define MMFREE_MAX_LAYERS %d" % int(b["max_layers"]),
        "#define MMFREE_FLOAT_LANES %d" % fl,
        "#define MMFREE_SIGMOID_LANES %d" % sl,
        "/* derived (pragma values must be literals): banks and reduction distances */",
        "#define MMFREE_X_BANKS %d   /* x, h: read and written FLOAT_LANES per cycle */" % max(1, fl),
        "#define MMFREE_Y_BANKS %d   /* product outputs: PORTS written, FLOAT_LANES read per cycle */"
        % max(1, max(ports, fl, 2 if bits == 128 else 1) // 2),
        "#define MMFREE_RED_DISTANCE %d   /* a reduction's partial sum recurs every 16 / FLOAT_LANES iterations */"
        % (16 // fl),
        "#define MMFREE_SIG_DISTANCE %d" % (16 // sl),
        "#define MMFREE_BIG_RAM %s   /* storage of the large vector buffers */" % ("uram" if uram else "bram"),
        "#endif",
        "",
    ]
    return "\n".join(lines)


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: gen_board_header.py BOARD OUT.h")
    text = header(argv[1])
    out = argv[2]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    old = open(out).read() if os.path.exists(out) else None
    if old != text:  # keep the timestamp when nothing changed (make does not rebuild)
        with open(out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
