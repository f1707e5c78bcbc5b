"""Event-driven stochastic simulator of n replicas under a gate-and-route policy.

The model is the paper's CTMC (arXiv 2602.02987 section 2.3): Poisson class arrivals n*lambda_i,
exponential prefill times (rate C/(P_i tau)), exponential decode times (1/(D_i tau) while the
replica runs a prefill, gamma/D_i otherwise: the mode switch is endogenous), exponential
patience theta_i in the prefill queue and in the decode buffer, no abandonment in service.

Why it is fast enough for n = 500: all jobs of one class in one speed mode are exchangeable, so
the next event is drawn from about 5I+1 aggregate rates (Gillespie), not from per-job clocks.
Only the replica that an event touches is then located: prefill completions pick uniformly
from a bag of replicas running that class, decode completions pick a replica by rejection
sampling proportional to its class count. Bags are O(1) add/remove/choice index sets. The
engine is plain Python over small lists (numpy scalars are slower per call); numpy is used for
the summary statistics. Fixed seed -> identical run.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from solvers.gate_route.instance import GateRouteInstance
from solvers.gate_route.policies import GateRoutePolicy, PrefillGate

__all__ = ["SimConfig", "SimResult", "simulate"]


@dataclass(frozen=True)
class SimConfig:
    """n replicas; rewards are measured on [warmup_s, warmup_s + horizon_s] from an empty start.

    slow_idle_mixed=True keeps decodes on a static mixed replica at the mixed speed even while
    its prefill slot is idle (the simplification of the notes' section 8.4); the default lets
    them run at gamma, as the paper's endogenous mode switch implies.
    """

    n: int
    horizon_s: float = 1000.0
    warmup_s: float = 200.0
    seed: int = 0
    sample_dt: float = 1.0
    slow_idle_mixed: bool = False


@dataclass(frozen=True, eq=False)
class SimResult:
    """Counts are over the measurement window; occupancies are per replica (divided by n)."""

    policy: str
    n: int
    seed: int
    horizon_s: float
    warmup_s: float
    reward_bundled_per_s: float
    reward_separate_per_s: float
    arrivals: np.ndarray
    admitted: np.ndarray
    prefill_done: np.ndarray
    decode_done: np.ndarray
    abandoned_prefill: np.ndarray
    abandoned_decode: np.ndarray
    mean_x: np.ndarray
    mean_y_m: np.ndarray
    mean_y_s: np.ndarray
    mean_q_p: np.ndarray
    mean_q_d: np.ndarray
    sample_t: np.ndarray
    sample_x: np.ndarray
    sample_y: np.ndarray
    sample_q_p: np.ndarray
    sample_q_d: np.ndarray
    events: int
    wall_s: float

    def reward_per_s(self, charging: str = "bundled") -> float:
        return self.reward_separate_per_s if charging == "separate" else self.reward_bundled_per_s


def _bag_add(items: list, pos: list, g: int) -> None:
    if pos[g] < 0:
        pos[g] = len(items)
        items.append(g)


def _bag_remove(items: list, pos: list, g: int) -> None:
    k = pos[g]
    if k >= 0:
        last = items.pop()
        if last != g:
            items[k] = last
            pos[last] = k
        pos[g] = -1


def simulate(inst: GateRouteInstance, policy: GateRoutePolicy, config: SimConfig) -> SimResult:
    """Run one seeded replication and return rewards per replica-second and occupancies."""
    wall0 = time.perf_counter()
    rng = random.Random(config.seed)
    rand = rng.random
    log = math.log

    n = int(config.n)
    I = inst.n_classes
    B = inst.slots
    lam = inst.lam
    theta = [float(v) for v in inst.theta]
    mup = [float(v) for v in inst.mu_p]
    mum = [float(v) for v in inst.mu_m]
    mus = [float(v) for v in inst.mu_s]
    lam_total = float(n * lam.sum())
    lam_cum = list(np.cumsum(lam / lam.sum())) if lam_total > 0 else [1.0] * I
    lam_cum[-1] = 1.0

    static = policy.layout == "static"
    coupling = policy.coupling
    p_solo = list(policy.solo_probability)
    M = policy.mixed_replicas if static else 0
    slow = bool(config.slow_idle_mixed)
    prefill_gate = PrefillGate(policy, n)  # the admission rule, shared with the fleet simulator
    gate_pick = prefill_gate.pick
    gate_closed = prefill_gate.closed
    bp_on = prefill_gate.bp_on

    # ---- replica state --------------------------------------------------------------
    KIND_SHARED, KIND_MIXED, KIND_SOLO = 0, 1, 2
    kind = [KIND_SHARED] * n if not static else [KIND_MIXED] * M + [KIND_SOLO] * (n - M)
    pre = [-1] * n  # class of the running prefill, -1 if none
    dec = [0] * n  # decodes on the replica
    cnt = [0] * (n * I)  # decodes per (replica, class)
    mode = [1] * n  # 0: decodes at mixed speed, 1: solo speed
    if static and slow:
        for g in range(M):
            mode[g] = 0

    runp = [([], [-1] * n) for _ in range(I)]
    dbag = [[([], [-1] * n) for _ in range(I)] for _ in range(2)]
    free_solo = ([], [-1] * n)  # static solo replicas with a free slot
    free_mixed = ([], [-1] * n)  # static mixed replicas with a free decode slot
    free_any = ([], [-1] * n)  # shared replicas with a free slot
    idle_pre = ([], [-1] * n)  # replicas that could start a prefill now

    def refresh(g: int) -> None:
        k = kind[g]
        if k == KIND_SOLO:
            (_bag_add if dec[g] < B else _bag_remove)(*free_solo, g)
        elif k == KIND_MIXED:
            (_bag_add if dec[g] < B - 1 else _bag_remove)(*free_mixed, g)
            (_bag_add if pre[g] < 0 else _bag_remove)(*idle_pre, g)
        else:
            busy = dec[g] + (pre[g] >= 0)
            (_bag_add if busy < B else _bag_remove)(*free_any, g)
            (_bag_add if pre[g] < 0 and dec[g] < B else _bag_remove)(*idle_pre, g)

    for g in range(n):
        refresh(g)

    # ---- queues and aggregates ----------------------------------------------------------
    qp = [deque() for _ in range(I)]
    n_pools = 2 if coupling == "randomised" else 1
    bufs = [[deque() for _ in range(I)] for _ in range(n_pools)]
    qd = [0] * I
    X = [0] * I
    Ym = [0] * I
    Ys = [0] * I
    c_arr = [0] * I
    c_adm = [0] * I
    c_pd = [0] * I
    c_dd = [0] * I
    c_abp = [0] * I
    c_abd = [0] * I
    t = 0.0

    def switch_mode(g: int, new: int) -> None:
        old = mode[g]
        if old == new:
            return
        base = g * I
        for i in range(I):
            k = cnt[base + i]
            if k:
                if new == 0:
                    Ys[i] -= k
                    Ym[i] += k
                else:
                    Ym[i] -= k
                    Ys[i] += k
                _bag_remove(*dbag[old][i], g)
                _bag_add(*dbag[new][i], g)
        mode[g] = new

    def admit_on(g: int) -> bool:
        c = gate_pick(X, qp, qd)
        if c < 0:
            return False
        qp[c].popleft()
        X[c] += 1
        c_adm[c] += 1
        pre[g] = c
        _bag_add(*runp[c], g)
        if mode[g]:
            switch_mode(g, 0)
        refresh(g)
        return True

    def admit_somewhere(g: int) -> None:
        """After a release at replica g: let g prefill if it can, else any idle replica."""
        items, pos = idle_pre
        if pos[g] >= 0:
            admit_on(g)
        elif items:
            admit_on(items[int(rand() * len(items))])

    def add_decode(g: int, i: int) -> None:
        k = g * I + i
        m = mode[g]
        if cnt[k] == 0:
            _bag_add(*dbag[m][i], g)
        cnt[k] += 1
        dec[g] += 1
        if m:
            Ys[i] += 1
        else:
            Ym[i] += 1
        refresh(g)

    def route_decode(i: int) -> None:
        """Greedy router: a free solo slot, else a free mixed slot, else the FCFS buffer."""
        if static:
            items = free_solo[0] or free_mixed[0]
        else:
            items = free_any[0]
        if items:
            add_decode(items[int(rand() * len(items))], i)
        else:
            bufs[0][i].append(t)
            qd[i] += 1

    def route_random(i: int) -> None:
        """SLI router: solo pool with probability p_s,i, else mixed; that pool's buffer if full."""
        pool = 1 if rand() <= p_solo[i] else 0
        items = free_solo[0] if pool else free_mixed[0]
        if items:
            add_decode(items[int(rand() * len(items))], i)
        else:
            bufs[pool][i].append(t)
            qd[i] += 1

    def pop_buffer(pool: int) -> int:
        """FCFS across classes: the class of the oldest buffered decode, removed; -1 if empty."""
        bp = bufs[pool]
        best, bt = -1, 0.0
        for i in range(I):
            if bp[i]:
                h = bp[i][0]
                if best < 0 or h < bt:
                    best, bt = i, h
        if best >= 0:
            bp[best].popleft()
            qd[best] -= 1
        return best

    def wake_idle() -> None:
        """Backpressure released: idle prefill slots may admit again."""
        items = idle_pre[0]
        while items and not gate_closed(qd):
            if not admit_on(items[int(rand() * len(items))]):
                break

    def settle_mode(g: int) -> None:
        want = 0 if (pre[g] >= 0 or (slow and kind[g] == KIND_MIXED)) else 1
        if mode[g] != want:
            switch_mode(g, want)

    # ---- main loop ----------------------------------------------------------------------
    warm = float(config.warmup_s)
    end = warm + float(config.horizon_s)
    dt = float(config.sample_dt)
    next_sample = warm
    samples: list = []
    base_counts = None
    events = 0
    rates = [0.0] * (5 * I)
    while True:
        tot = lam_total
        for i in range(I):
            j = 5 * i
            r0 = theta[i] * len(qp[i])
            r1 = theta[i] * qd[i]
            r2 = mup[i] * X[i]
            r3 = mum[i] * Ym[i]
            r4 = mus[i] * Ys[i]
            rates[j] = r0
            rates[j + 1] = r1
            rates[j + 2] = r2
            rates[j + 3] = r3
            rates[j + 4] = r4
            tot += r0 + r1 + r2 + r3 + r4
        if tot <= 0.0:
            break
        t_new = t - log(1.0 - rand()) / tot
        if t_new >= warm and base_counts is None:
            base_counts = [list(c) for c in (c_arr, c_adm, c_pd, c_dd, c_abp, c_abd)]
        while t_new >= next_sample and next_sample < end:
            samples.append(
                (next_sample, *X, *Ym, *Ys, *(len(q) for q in qp), *qd)
            )
            next_sample += dt
        if t_new >= end:
            break
        t = t_new
        events += 1
        u = rand() * tot
        if u < lam_total:
            v = u / lam_total
            i = 0
            while v > lam_cum[i]:
                i += 1
            qp[i].append(t)
            c_arr[i] += 1
            items = idle_pre[0]
            if items:
                admit_on(items[int(rand() * len(items))])
            continue
        u -= lam_total
        k = 0
        last = 5 * I - 1
        while k < last and u >= rates[k]:
            u -= rates[k]
            k += 1
        while rates[k] <= 0.0:  # float residue landed on an empty category
            k -= 1
        i, ev = divmod(k, 5)
        if ev == 0:  # prefill-queue abandonment
            q = qp[i]
            del q[int(rand() * len(q))]
            c_abp[i] += 1
        elif ev == 1:  # decode-buffer abandonment
            if n_pools == 2 and bufs[0][i] and (not bufs[1][i] or rand() * qd[i] < len(bufs[0][i])):
                q = bufs[0][i]
            else:
                q = bufs[n_pools - 1][i]
            del q[int(rand() * len(q))]
            qd[i] -= 1
            c_abd[i] += 1
            if bp_on:
                wake_idle()
        elif ev == 2:  # prefill completion
            items, pos = runp[i]
            g = items[int(rand() * len(items))]
            _bag_remove(items, pos, g)
            pre[g] = -1
            X[i] -= 1
            c_pd[i] += 1
            settle_mode(g)
            if coupling == "immediate":
                add_decode(g, i)  # refreshes g
                admit_somewhere(g)
            elif coupling == "prefill_first":
                refresh(g)
                admit_somewhere(g)
                route_decode(i)
            else:
                refresh(g)
                if coupling == "randomised":
                    route_random(i)
                else:
                    route_decode(i)
                admit_somewhere(g)
        else:  # decode completion on a mixed-speed (ev 3) or solo-speed (ev 4) replica
            m = ev - 3
            items, pos = dbag[m][i]
            ln = len(items)
            while True:
                g = items[int(rand() * ln)]
                kk = g * I + i
                if rand() * B < cnt[kk]:
                    break
            cnt[kk] -= 1
            if cnt[kk] == 0:
                _bag_remove(items, pos, g)
            dec[g] -= 1
            if m:
                Ys[i] -= 1
            else:
                Ym[i] -= 1
            c_dd[i] += 1
            refresh(g)
            if coupling == "decode_first":
                c = pop_buffer(0)
                if c >= 0:
                    route_decode(c)
            elif coupling == "randomised":
                c = pop_buffer(1 if kind[g] == KIND_SOLO else 0)
                if c >= 0:
                    add_decode(g, c)
            elif coupling == "immediate":
                if pre[g] < 0:
                    admit_on(g)
            else:  # prefill_first
                if not (pre[g] < 0 and admit_on(g)):
                    c = pop_buffer(0)
                    if c >= 0:
                        add_decode(g, c)
            if bp_on:
                wake_idle()

    if base_counts is None:
        base_counts = [[0] * I for _ in range(6)]
    counts = [
        np.asarray(c, dtype=float) - np.asarray(b0, dtype=float)
        for c, b0 in zip((c_arr, c_adm, c_pd, c_dd, c_abp, c_abd), base_counts)
    ]
    arr_c, adm_c, pd_c, dd_c, abp_c, abd_c = counts
    horizon = float(config.horizon_s)
    scale = 1.0 / (n * horizon) if horizon > 0 else 0.0
    reward_b = float((inst.w * dd_c).sum() * scale)
    reward_s = float((inst.prefill_price * pd_c + inst.decode_price * dd_c).sum() * scale)

    s = np.asarray(samples, dtype=float).reshape(-1, 1 + 5 * I)
    st = s[:, 0]
    blocks = [s[:, 1 + k * I : 1 + (k + 1) * I] / n for k in range(5)]
    means = [b.mean(axis=0) if len(b) else np.zeros(I) for b in blocks]
    return SimResult(
        policy=policy.name,
        n=n,
        seed=config.seed,
        horizon_s=horizon,
        warmup_s=warm,
        reward_bundled_per_s=reward_b,
        reward_separate_per_s=reward_s,
        arrivals=arr_c,
        admitted=adm_c,
        prefill_done=pd_c,
        decode_done=dd_c,
        abandoned_prefill=abp_c,
        abandoned_decode=abd_c,
        mean_x=means[0],
        mean_y_m=means[1],
        mean_y_s=means[2],
        mean_q_p=means[3],
        mean_q_d=means[4],
        sample_t=st,
        sample_x=blocks[0],
        sample_y=blocks[1] + blocks[2],
        sample_q_p=blocks[3],
        sample_q_d=blocks[4],
        events=events,
        wall_s=time.perf_counter() - wall0,
    )
