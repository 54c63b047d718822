#!/usr/bin/env python3
"""bench/driver_pipeline.py - fleetlm appends from a real driver, psycopg 3.

One connection (autocommit) appends the 104-byte message of append_small
to random sessions bench-1 .. bench-N for DURATION seconds, in one of two
ways:

  one       conn.execute(append).fetchone() per message: one round trip,
            and one durability wait, per append
  pipeline  `with conn.pipeline():` DEPTH cursor.execute(append) calls,
            then the pipeline's Sync; the seqs are fetched after it
  executemany
            cursor.executemany(append, DEPTH parameter sets,
            returning=True): the driver's own batch, which psycopg sends
            as one pipeline; a reference, not the goal's workload
  select    the pipeline of `pipeline` with a SELECT of the same two
            parameters instead of the append: what the driver itself
            costs, the ceiling of `pipeline` (a reference)

Prints one line, "mode=M depth=D appends=A seconds=S rate=R", where S is
the wall time of the loop and R = A / S.  Every seq returned is checked
(an integer above 0).  Exits 3 with a message if psycopg 3 is missing:
it is an optional dependency of bench/run (Debian python3-psycopg), not
of the test suite.

Usage: driver_pipeline.py CONNINFO MODE DURATION NSESSIONS [DEPTH]
"""
import random
import sys
import time

try:
    import psycopg
except ImportError:
    print("driver_pipeline.py: the Python module psycopg (psycopg 3, Debian "
          "python3-psycopg) is missing", file=sys.stderr)
    sys.exit(3)

APPEND = ("SELECT fleetlm.append(%s, %s, 'text', '{\"text\": \"Hi, I was charged "
          "twice for my subscription this month. Could you check invoice "
          "4417 for me?\"}')")
# the same round trip without fleetlm: a positive number, like a seq
SELECT = "SELECT length(%s::text) + length(%s::text)"


def one_by_one(conn, deadline, nsessions):
    """Append one message per round trip until the deadline."""
    n = 0
    while time.monotonic() < deadline:
        i = random.randint(1, nsessions)
        seq = conn.execute(APPEND, (f"bench-{i}", f"user-{i}")).fetchone()[0]
        if seq < 1:
            raise SystemExit(f"driver_pipeline.py: bad seq {seq}")
        n += 1
    return n


def pipelined(conn, deadline, nsessions, depth, query=APPEND):
    """Run DEPTH queries (appends) per pipeline until the deadline."""
    n = 0
    while time.monotonic() < deadline:
        cursors = []
        with conn.pipeline():
            for _ in range(depth):
                i = random.randint(1, nsessions)
                cursors.append(conn.execute(query, (f"bench-{i}", f"user-{i}")))
        for cur in cursors:
            seq = cur.fetchone()[0]
            if seq < 1:
                raise SystemExit(f"driver_pipeline.py: bad seq {seq}")
        n += depth
    return n


def execute_many(conn, deadline, nsessions, depth):
    """Append DEPTH messages per executemany until the deadline."""
    n = 0
    cur = conn.cursor()
    while time.monotonic() < deadline:
        ids = [random.randint(1, nsessions) for _ in range(depth)]
        cur.executemany(APPEND, [(f"bench-{i}", f"user-{i}") for i in ids], returning=True)
        got = 0
        while True:
            seq = cur.fetchone()[0]
            if seq < 1:
                raise SystemExit(f"driver_pipeline.py: bad seq {seq}")
            got += 1
            if not cur.nextset():
                break
        if got != depth:
            raise SystemExit(f"driver_pipeline.py: {got} results for {depth} appends")
        n += depth
    return n


def main():
    if len(sys.argv) not in (5, 6) or sys.argv[2] not in ("one", "pipeline", "executemany", "select"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    conninfo, mode = sys.argv[1], sys.argv[2]
    duration, nsessions = float(sys.argv[3]), int(sys.argv[4])
    depth = int(sys.argv[5]) if len(sys.argv) == 6 else 100
    with psycopg.connect(conninfo, autocommit=True) as conn:
        start = time.monotonic()
        deadline = start + duration
        if mode == "one":
            n = one_by_one(conn, deadline, nsessions)
            depth = 1
        elif mode == "pipeline":
            n = pipelined(conn, deadline, nsessions, depth)
        elif mode == "select":
            n = pipelined(conn, deadline, nsessions, depth, SELECT)
        else:
            n = execute_many(conn, deadline, nsessions, depth)
        secs = time.monotonic() - start
    print(f"mode={mode} depth={depth} appends={n} seconds={secs:.3f} rate={n / secs:.1f}")


if __name__ == "__main__":
    main()
