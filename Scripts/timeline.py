#!/usr/bin/env python3
"""Per-step breakdown of a cluster's time from the files `MOPE_TIMELINE=DIR` makes every process write.

    Scripts/timeline.py DIR [--session N]

Every complete step in the files is counted, or only those of session N.

Every line of DIR/*.tsv is `nanoseconds  event  worker  session  step` (monotonic clock: one machine only).
For each step of each session the coordinator sent, with the worker whose reply came last (the one the step
waited for):

  wake      step-sent -> step-read   the step reaching the worker's loop: sockets, ZeroMQ's I/O threads, and any
                                     wait for a core before the worker reads it
  service   step-read -> dist-sent   the worker's pass (and any pass of other sessions before it), top-k, encode;
                                     split, where the worker wrote pass-start and pass-end, into
    before    step-read -> pass-start  waiting for the pass to start (another pass, or other experts' steps)
    pass      pass-start -> pass-end   the forward pass
    after     pass-end -> dist-sent    top-k, encoding and sending the replies
  back      dist-sent -> dist-read   the reply reaching the coordinator's loop
  turn      last dist-read of the previous step -> step-sent: the coordinator's merge, sampling and sends

A cycle is turn + wake + service + back; everything but `service` is the cluster's overhead.
"""
import glob
import os
import statistics
import sys
from collections import defaultdict


def main(directory, only_session=None):
    events = defaultdict(dict)  # (session, step, worker) -> {event: time}
    for path in glob.glob(os.path.join(directory, "*.tsv")):
        for line in open(path):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 5:
                continue
            nanos, event, worker, session, step = fields
            if only_session is not None and int(session) != only_session:
                continue
            events[(int(session), int(step), worker)].setdefault(event, int(nanos))
    steps = defaultdict(dict)  # (session, step) -> {worker: events}
    for (session, step, worker), times in events.items():
        steps[(session, step)][worker] = times
    rows = []
    for (session, step), workers in steps.items():
        complete = {w: t for w, t in workers.items()
                    if all(e in t for e in ("step-sent", "step-read", "dist-sent", "dist-read"))}
        if not complete or len(complete) != len(workers):
            continue
        last = max(complete, key=lambda w: complete[w]["dist-read"])
        t = complete[last]
        previous = steps.get((session, step - 1), {})
        reads = [p["dist-read"] for p in previous.values() if "dist-read" in p]
        sent = min(x["step-sent"] for x in complete.values())
        wakes = sorted(x["step-read"] - x["step-sent"] for x in complete.values())
        rows.append({
            "turn": sent - max(reads) if reads else None,
            "wake": t["step-read"] - t["step-sent"],
            "service": t["dist-sent"] - t["step-read"],
            "back": t["dist-read"] - t["dist-sent"],
            "first wake": wakes[0],
            "last wake": wakes[-1],
            "before": t["pass-start"] - t["step-read"] if "pass-start" in t else None,
            "pass": t["pass-end"] - t["pass-start"] if "pass-start" in t and "pass-end" in t else None,
            "after": t["dist-sent"] - t["pass-end"] if "pass-end" in t else None,
        })
    if not rows:
        sys.exit(f"timeline: no complete steps in {directory}/*.tsv (was MOPE_TIMELINE set for every process?)")
    print(f"{len(rows)} steps; milliseconds, for the worker each step waited for (see the docstring)")
    print(f"{'':12} {'median':>8} {'mean':>8} {'p90':>8}")
    for key in ("turn", "wake", "service", "before", "pass", "after", "back", "first wake", "last wake"):
        values = sorted(r[key] / 1e6 for r in rows if r[key] is not None)
        if not values:
            continue
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        print(f"{key:12} {statistics.median(values):8.3f} {statistics.mean(values):8.3f} {p90:8.3f}")
    cycles = [r for r in rows if r["turn"] is not None]
    service = statistics.mean(r["service"] for r in cycles)
    overhead = statistics.mean(r["turn"] + r["wake"] + r["back"] for r in cycles)
    print(f"per step: service {service / 1e6:.3f} ms, everything else {overhead / 1e6:.3f} ms "
          f"({100 * overhead / service:.1f}% of the service)")


if __name__ == "__main__":
    if len(sys.argv) == 2:
        main(sys.argv[1])
    elif len(sys.argv) == 4 and sys.argv[2] == "--session" and sys.argv[3].isdigit():
        main(sys.argv[1], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
