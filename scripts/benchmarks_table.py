"""Print the modeled tables of docs/benchmarks.md from mmfree.perf (every figure modeled).

    python scripts/benchmarks_table.py > /tmp/tables.md
"""
from mmfree import perf
from mmfree.cycles import boards


def main():
    print("| board | size | packing | ceiling tok/s (peak) | decode tok/s | stream fraction | "
          "stream fraction, kernel only | weight stream ms | compute beyond ms | driver ms |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for board in boards():
        for size in perf.SIZES:
            for packing in ("2bit", "base3"):
                r = perf.project_size(board, size, packing)
                k = perf.project_size(board, size, packing, driver_s_per_call=0.0)
                if not r["fits_board"]:
                    continue
                print(f"| {board} | {size} | {packing} | {r['ddr_ceiling_tokens_per_s']:.1f} | "
                      f"{r['decode_tokens_per_s']:.1f} | {r['stream_fraction']:.3f} | {k['stream_fraction']:.3f} | "
                      f"{1e3 * r['stream_s']:.2f} | {1e3 * r['compute_beyond_stream_s']:.2f} | "
                      f"{1e3 * r['driver_s']:.2f} |")


if __name__ == "__main__":
    main()
