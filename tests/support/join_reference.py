"""An independent reference for spate's windowed stream-stream joins
(src/pipeline/join_state.rs), written from the rules in its module docs with plain lists:

    python3 join_reference.py INPUT.csv WINDOW_MS LATENESS_MS inner|left|outer

INPUT.csv holds `side,partition,key,event_time_ms,id` lines (side `L` or `R`), each side's
records of a partition in their offset order. Rules: per side and partition, a record older
than the largest event time seen before it on that side minus the lateness is late and joins
nothing; every pair of non-late records of one partition, a left and a right with the same
key whose event times are at most WINDOW_MS apart, is one result; a left (outer) join adds
each non-late left (or either) record that is in no pair. Prints every result as
`key,left_time,left_id,right_time,right_id` (empty fields for a missing side), sorted, then
`late,N`.
"""
import sys
from collections import defaultdict


def main():
    path, window, lateness, join = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    max_time = {}
    late = 0
    kept = defaultdict(list)  # (partition, key) -> [(side, time, id)]
    with open(path) as f:
        for line in f:
            side, partition, key, time, rid = line.rstrip("\n").split(",")
            time = int(time)
            seen = max_time.get((side, partition))
            if seen is not None and time < seen - lateness:
                late += 1
                continue
            max_time[(side, partition)] = time if seen is None else max(seen, time)
            kept[(partition, key)].append((side, time, rid))
    results = []
    for (_, key), records in kept.items():
        lefts = [r for r in records if r[0] == "L"]
        rights = [r for r in records if r[0] == "R"]
        matched = set()
        for li, (_, lt, lid) in enumerate(lefts):
            for ri, (_, rt, rid) in enumerate(rights):
                if abs(lt - rt) <= window:
                    results.append(f"{key},{lt},{lid},{rt},{rid}")
                    matched.add(("L", li))
                    matched.add(("R", ri))
        if join in ("left", "outer"):
            for li, (_, lt, lid) in enumerate(lefts):
                if ("L", li) not in matched:
                    results.append(f"{key},{lt},{lid},,")
        if join == "outer":
            for ri, (_, rt, rid) in enumerate(rights):
                if ("R", ri) not in matched:
                    results.append(f"{key},,,{rt},{rid}")
    for r in sorted(results):
        print(r)
    print(f"late,{late}")


main()
