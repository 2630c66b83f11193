#!/usr/bin/env python3
"""Which pages of a running process's binary are resident, per mapping and per 64 KiB block.

    scripts/resident-pages.py PID [BINARY]

Reads /proc/PID/maps and /proc/PID/pagemap (root, or the process's owner with CAP_SYS_ADMIN, sees
the present bit). BINARY defaults to the process's executable. For each mapping of the binary it
prints its permissions, file offset, size and resident pages; for the executable mapping also the
resident 4 KiB pages of each 64 KiB block of the file, which is the unit the kernel maps a cached
file in around a fault (fault-around, /sys/kernel/mm/transparent_hugepage aside).

Why: 200 producers share their binary's pages, but each process's RSS counts every page it has
mapped. This says whether a process maps its code because it runs it, or because it runs something
next to it (BENCHMARKS.md, "Findings", session 8).
"""

import os
import struct
import sys

PAGE = 4096
BLOCK = 64 * 1024


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print("usage: " + __doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    pid = sys.argv[1]
    binary = os.path.realpath(sys.argv[2] if len(sys.argv) == 3 else f"/proc/{pid}/exe")
    total = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or os.path.realpath(fields[5]) != binary:
                continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            perms, offset = fields[1], int(fields[2], 16)
            resident = []
            for va in range(lo, hi, PAGE):
                pagemap.seek(va // PAGE * 8)
                (entry,) = struct.unpack("Q", pagemap.read(8))
                if entry >> 63 & 1:
                    resident.append(va - lo + offset)
            total += len(resident)
            print(
                f"{perms} offset {offset:#x}: {(hi - lo) // 1024} KiB mapped, "
                f"{len(resident) * PAGE // 1024} KiB resident"
            )
            if "x" in perms:
                blocks: dict[int, int] = {}
                for at in resident:
                    blocks[at // BLOCK] = blocks.get(at // BLOCK, 0) + 1
                print(
                    f"  64 KiB blocks with resident pages: {len(blocks)} of "
                    f"{-(-(hi - lo) // BLOCK)}; pages per block (file offset in KiB: pages):"
                )
                print("  " + " ".join(f"{b * 64}:{n}" for b, n in sorted(blocks.items())))
    print(f"{total * PAGE // 1024} KiB of {binary} resident")
    return 0


if __name__ == "__main__":
    sys.exit(main())
