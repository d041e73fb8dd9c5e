"""An independent reference for spate's event-time windows (src/pipeline/window.rs), written
from the rules in its module docs, record by record with plain dicts and heaps:

    python3 windows_reference.py INPUT.csv tumbling:SIZE|hopping:SIZE:ADVANCE|session:GAP \\
        count|sum|min|max|avg LATENESS_MS

INPUT.csv holds `key,event_time_ms,value` lines in input order (one partition). Prints every
window's final result as `key,start,end,value` (sorted), then `late_at,I` for each record
dropped as late (I: its line, from 0), then `late,N`. An average prints as `SUM/COUNT` (exact
integers), so its comparison does not depend on how either side formats a fraction.
"""
import heapq
import sys


def main():
    path, spec, agg, lateness = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    kind, *sizes = spec.split(":")
    sizes = [int(s) for s in sizes]
    init = {"count": lambda v: 1, "avg": lambda v: (v, 1)}.get(agg, lambda v: v)
    merge = {
        "count": lambda a, b: a + b,
        "sum": lambda a, b: a + b,
        "min": min,
        "max": max,
        "avg": lambda a, b: (a[0] + b[0], a[1] + b[1]),
    }[agg]
    show = (lambda a: f"{a[0]}/{a[1]}") if agg == "avg" else str
    if kind == "tumbling":
        size, advance, gap = sizes[0], sizes[0], None
    elif kind == "hopping":
        size, advance, gap = sizes[0], sizes[1], None
    else:
        size, advance, gap = None, None, sizes[0]
    max_time = None
    late = 0
    late_at = []
    results = []
    windows = {}  # (key, start) -> value
    sessions = {}  # key -> {start: [start, last, value]}
    ends = []  # heap of (end, key, start): when each window or session closes

    def watermark():
        return float("-inf") if max_time is None else max_time - lateness

    def close(wm):
        # A window or session closes once the watermark reaches its end; a session entry in
        # the heap is stale if the session has since merged or grown.
        while ends and ends[0][0] <= wm:
            end, key, start = heapq.heappop(ends)
            if gap is None:
                results.append((key, start, end, windows.pop((key, start))))
            else:
                s = sessions.get(key, {}).get(start)
                if s is not None and s[1] + gap == end:
                    results.append((key, start, end, s[2]))
                    del sessions[key][start]

    with open(path) as fh:
        for index, line in enumerate(fh):
            key, t, v = line.rstrip("\n").split(",")
            t, v = int(t), int(v)
            wm = watermark()
            if gap is None:
                starts = range((t // advance) * advance, t - size, -advance)
                open_ = [s for s in starts if s + size > wm]
                if not open_:
                    late += 1
                    late_at.append(index)
                for s in open_:
                    k = (key, s)
                    if k in windows:
                        windows[k] = merge(windows[k], init(v))
                    else:
                        windows[k] = init(v)
                        heapq.heappush(ends, (s + size, key, s))
            else:
                mine = sessions.setdefault(key, {})
                joined = [s for s in mine.values() if s[0] - gap < t < s[1] + gap]
                start, last, value = t, t, init(v)
                for s in joined:
                    start, last, value = min(start, s[0]), max(last, s[1]), merge(s[2], value)
                if last + gap <= wm:
                    late += 1
                    late_at.append(index)
                else:
                    for s in joined:
                        del mine[s[0]]
                    mine[start] = [start, last, value]
                    heapq.heappush(ends, (last + gap, key, start))
            max_time = t if max_time is None else max(max_time, t)
            close(watermark())
    close(float("inf"))
    for r in sorted(results):
        print(f"{r[0]},{r[1]},{r[2]},{show(r[3])}")
    for index in late_at:
        print(f"late_at,{index}")
    print(f"late,{late}")


main()
