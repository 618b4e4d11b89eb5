"""bench/energy.py: each bench arm's timed window joined with the GPU's power samples."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import energy  # noqa: E402

HEADER = ("timestamp, clocks.current.sm [MHz], clocks.current.memory [MHz], power.draw [W], temperature.gpu, "
          "clocks_event_reasons.active\n")


def _smi(path: Path, rows: list[tuple[str, int, float]]) -> None:
    with gzip.open(path, "wt") as f:
        f.write(HEADER)
        for t, sm, w in rows:
            f.write(f"2026/11/30 {t}, {sm} MHz, 3201 MHz, {w} W, 40, 0x0000000000000004\n")
        f.write("2026/11/30 04:00:09.000, [N/A], 3201 MHz, [N/A], 40, 0x0\n")  # a sample nvidia-smi could not read


def test_mean_power_and_tokens_per_joule_over_each_arms_window(tmp_path):
    base = 1796011200.0  # 2026-11-30 04:00:00 UTC
    _smi(tmp_path / "smi.csv.gz", [("03:59:59.750", 345, 80.0), ("04:00:00.250", 1500, 600.0),
                                    ("04:00:00.750", 1400, 700.0), ("04:00:01.250", 1600, 650.0),
                                    ("04:00:01.750", 1500, 690.0), ("04:00:02.250", 345, 90.0)])
    arms = [{"model": "m", "workload": "reads", "implementation": "a", "tokens": 1_000_000, "tokens_per_s": 500_000,
             "wall_start": base, "wall_end": base + 1.0},
            {"model": "m", "workload": "reads", "implementation": "b", "tokens": 1_000_000, "tokens_per_s": 1_000_000,
             "wall_start": base + 1.0, "wall_end": base + 2.0},
            {"model": "m", "workload": "short", "implementation": "c", "tokens": 10, "tokens_per_s": 10,
             "wall_start": base + 1.3, "wall_end": base + 1.4},
            {"measurement": "matmul_ceiling", "tflops": 750.0}]
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in arms))
    samples = energy.read_samples(str(tmp_path / "smi.csv.gz"))
    assert len(samples) == 6 and samples[1][0] == base + 0.25
    a = energy.arm_energy(arms[0], samples)
    assert (a["samples"], a["mean_w"], a["mean_sm_mhz"], a["joules"], a["tokens_per_joule"]) == (2, 650.0, 1450, 650.0, 1538.5)
    b = energy.arm_energy(arms[1], samples)
    assert (b["samples"], b["mean_w"], b["tokens_per_joule"]) == (2, 670.0, 1492.5)
    assert energy.arm_energy(arms[2], samples) is None  # no sample inside 0.1 s
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "energy.py"), str(tmp_path / "bench.jsonl"),
                          str(tmp_path / "smi.csv.gz")], capture_output=True, text=True, check=True).stdout
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x.get("implementation") for x in lines] == ["a", "b", "c"] and "error" in lines[2]
    # a machine whose clock is an hour ahead of UTC: the same samples fall an hour earlier
    assert energy.read_samples(str(tmp_path / "smi.csv.gz"), 1.0)[1][0] == base + 0.25 - 3600


def test_a_bench_without_windows_is_refused(tmp_path):
    (tmp_path / "bench.jsonl").write_text(json.dumps({"model": "m", "tokens": 5, "implementation": "a"}) + "\n")
    _smi(tmp_path / "smi.csv.gz", [])
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "energy.py"), str(tmp_path / "bench.jsonl"),
                        str(tmp_path / "smi.csv.gz")], capture_output=True, text=True)
    assert r.returncode == 2 and "no arm records a timed window" in r.stderr


def test_columns_are_found_by_name_in_any_order(tmp_path):
    """A query without clocks.mem (power in the third column) reads the watts, not the temperature."""
    path = tmp_path / "smi.csv"
    path.write_text("timestamp, clocks.current.sm [MHz], power.draw [W], temperature.gpu\n"
                    "2026/11/30 04:00:00.250, 1500 MHz, 600.0 W, 45\n")
    assert energy.read_samples(str(path)) == [(1796011200.25, 1500.0, 600.0)]
    (tmp_path / "bad.csv").write_text("timestamp, clocks.sm [MHz], temperature.gpu\n"
                                      "2026/11/30 04:00:00.250, 1500 MHz, 45\n")
    with pytest.raises(SystemExit, match="no power.draw column"):
        energy.read_samples(str(tmp_path / "bad.csv"))


def test_instantaneous_power_is_read_where_it_was_sampled(tmp_path):
    """power.draw is a lagging one-second average; with power.draw.instant in the query the watts
    come from it, whichever column comes first."""
    path = tmp_path / "smi.csv"
    path.write_text("timestamp, clocks.current.sm [MHz], power.draw [W], power.draw.instant [W], temperature.gpu\n"
                    "2026/11/30 04:00:00.250, 1500 MHz, 655.0 W, 682.0 W, 45\n")
    assert energy.read_samples(str(path)) == [(1796011200.25, 1500.0, 682.0)]
    path.write_text("timestamp, power.draw.instant [W], clocks.sm [MHz], power.draw [W]\n"
                    "2026/11/30 04:00:00.250, 690.0 W, 1400 MHz, 650.0 W\n")
    assert energy.read_samples(str(path)) == [(1796011200.25, 1400.0, 690.0)]
