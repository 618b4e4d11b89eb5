"""How a CPU worker sizes its threads from the CPUs granted (threads.py), with fake cgroup files."""
from __future__ import annotations

from pathlib import Path

from embed_worker.threads import choose_threads, granted_cpus, omp_env, parse_cfs, parse_cpu_max, read_grant


def _root(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> Path:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(proc_cgroup)
    for rel, text in files.items():
        p = tmp_path / "sys/fs/cgroup" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_cpu_max_parsing():
    assert parse_cpu_max("200000 100000\n") == 2
    assert parse_cpu_max("150000 100000") == 1  # 1.5 CPUs: one thread runs unthrottled
    assert parse_cpu_max("50000 100000") == 1  # never 0
    assert parse_cpu_max("max 100000") is None
    assert parse_cpu_max("garbage") is None
    assert parse_cfs("-1", "100000") is None
    assert parse_cfs("400000\n", "100000\n") == 4


def test_smallest_limit_wins():
    assert granted_cpus(8, [3], 4) == (3, "cgroup CPU quota")
    assert granted_cpus(2, [3], 4) == (2, "affinity mask")
    assert granted_cpus(16, [], 4) == (4, "SLURM_CPUS_PER_TASK")
    assert granted_cpus(None, [], None) == (None, "no limit found")


def test_choose_threads():
    assert choose_threads(None, 2, 64) == 2
    assert choose_threads(7, 2, 64) == 7  # --threads overrides the grant
    assert choose_threads(None, None, 64) == 64


def test_cgroup_v2_quota_in_an_ancestor(tmp_path):
    root = _root(tmp_path, "0::/job/step\n", {"job/cpu.max": "300000 100000\n", "job/step/cpu.max": "max 100000\n"})
    assert read_grant(root, env={}, affinity=lambda: 32) == (3, "cgroup CPU quota")


def test_cgroup_v1_quota(tmp_path):
    root = _root(tmp_path, "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n",
                 {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"})
    assert read_grant(root, env={}, affinity=lambda: 32) == (2, "cgroup CPU quota")


def test_unlimited_cgroup_falls_back_to_affinity_and_slurm(tmp_path):
    root = _root(tmp_path, "1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"})
    assert read_grant(root, env={}, affinity=lambda: 6) == (6, "affinity mask")
    assert read_grant(root, env={"SLURM_CPUS_PER_TASK": "4"}, affinity=lambda: 6) == (4, "SLURM_CPUS_PER_TASK")
    assert read_grant(root, env={"SLURM_CPUS_PER_TASK": "lots"}, affinity=lambda: 6) == (6, "affinity mask")


def test_no_cgroup_files_at_all(tmp_path):
    assert read_grant(tmp_path, env={}, affinity=lambda: None) == (None, "no limit found")


def test_waiting_threads_sleep_unless_the_user_chose():
    assert omp_env({}) == {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
    assert omp_env({"OMP_WAIT_POLICY": "ACTIVE"}) == {}
