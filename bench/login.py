"""login_ratio: password logins/s through POST /auth/login from concurrent clients, next to raw
Argon2id verifications/s at the configured parameters on the cores the server gives to hashing
(LEDGERLINE_HASHING_CORES, default all but one: one thread per hashing core); and GET /users/me
p99 while the logins run against that p99 when idle.
"""

from __future__ import annotations

import os
import threading
import time

from bench.harness import Figure, Process
from bench.measure import CpuMeter, Wrk, lua_strings, profiled, run_together
from bench.reads import get_load
from eventstore.passwords import Argon2Parameters, HashingSlots, Passwords

CLIENTS = 8
PROBE_CONNECTIONS = 2
PROBE_DELAY_MS = 20  # the GET probe is a light, steady load (about 100 requests/s)

LOGIN_LUA = r"""
local users = %(users)s
local password = %(password)s
function request()
  return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"},
    '{"username":"' .. users[tid %% #users + 1] .. '","password":"' .. password .. '"}')
end
"""
PROBE_LUA_DELAY = f"\nfunction delay() return {PROBE_DELAY_MS} end\n"


def argon2_verify_rate(parameters: Argon2Parameters, threads: int, seconds: float) -> float:
    passwords = Passwords(parameters, slots=HashingSlots(threads))
    stored = passwords.hash("Bench-pass-1!")
    counts = [0] * threads
    end = time.monotonic() + seconds

    def loop(index: int) -> None:
        while time.monotonic() < end:
            assert passwords.verify(stored, "Bench-pass-1!")
            counts[index] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / seconds


def measure(
    server: Process,
    usernames: list[str],
    password: str,
    probe_key: str,
    parameters: Argon2Parameters,
    hashing_cores: int,
    seconds: float,
) -> Figure:
    before = argon2_verify_rate(parameters, hashing_cores, seconds / 2)
    at_cores = argon2_verify_rate(parameters, os.cpu_count() or 1, seconds / 2)

    def probe(duration: float) -> Wrk:
        run = get_load(server, ["/api/v1/users/me"], [probe_key], connections=PROBE_CONNECTIONS,
                       seconds=duration)  # fmt: skip
        with open(run.script, "a") as script:
            script.write(PROBE_LUA_DELAY)
        return run

    def logins(duration: float) -> Wrk:
        script = LOGIN_LUA % {"users": lua_strings(usernames), "password": lua_strings([password])[1:-1]}
        return Wrk(server.url, script, threads=CLIENTS, connections=CLIENTS, seconds=duration)

    probe(1).run()  # warm-up
    idle = probe(seconds).run().check("GET probe (idle)")
    logins(2).run()  # warm-up: the first login of each user may rehash or start its stream
    with CpuMeter(server=server.pid) as cpu, profiled(server, "login", seconds):
        loaded, probe_loaded = run_together([logins(seconds), probe(seconds)])
    loaded.check("logins", tolerance=0)
    probe_loaded.check("GET probe (under logins)")
    after = argon2_verify_rate(parameters, hashing_cores, seconds / 2)  # the machine is shared: both sides
    baseline = (before + after) / 2
    p99_ratio = probe_loaded.p99_ms / idle.p99_ms
    return Figure(
        "login_ratio",
        loaded.rps,
        "logins/s",
        "ratio >= 0.9 and get_p99_ratio <= 2",
        baseline=baseline,
        extra={
            **loaded.summary(),
            "get_p99_idle_ms": round(idle.p99_ms, 2),
            "get_p99_under_login_ms": round(probe_loaded.p99_ms, 2),
            "get_p99_ratio": round(p99_ratio, 2),
            "cpu_cores": cpu.cores,
            "argon2": f"m={parameters.memory_kib} KiB, t={parameters.time_cost}, p={parameters.parallelism}",
            "argon2_verify_per_s_before_after": [round(before, 1), round(after, 1)],
            "argon2_verify_per_s_one_thread_per_core": round(at_cores, 1),
            "hashing_cores": hashing_cores,
            "notes": f"{CLIENTS} wrk clients logging in (own user each) against one `ledgerline serve` "
            "started with LEDGERLINE_LOGIN_RATE_LIMIT=0 (the per-client limit would otherwise "
            f"answer 429); baseline: Argon2id verify in {hashing_cores} thread(s), one per core the "
            "server gives to hashing (LEDGERLINE_HASHING_CORES; mean of a run before and one after); GET "
            f"probe: {PROBE_CONNECTIONS} connections of GET /api/v1/users/me, {PROBE_DELAY_MS} ms "
            "between requests, idle vs during the logins",
        },
    )
