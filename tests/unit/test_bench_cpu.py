"""benchmarks/cpu.py over a fake /proc: who used the cores during a measurement."""

from __future__ import annotations

from pathlib import Path

import pytest

import benchmarks.cpu as cpu

TICKS = cpu.TICKS_PER_S


def stat_line(pid: int, name: str, utime: int, stime: int) -> str:
    # pid (comm) state ppid ... field 14 utime, 15 stime
    rest = ["S", "1", *["0"] * 9, str(utime), str(stime), *["0"] * 30]
    return f"{pid} ({name}) {' '.join(rest)}\n"


def machine_line(user: int, system: int, idle: int, steal: int) -> str:
    return f"cpu  {user} 0 {system} {idle} 7 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    (tmp_path / "stat").write_text(machine_line(100, 50, 1000, 0))
    return tmp_path


def add_process(proc: Path, pid: int, name: str, utime: int, stime: int, *cmdline: str) -> None:
    (proc / str(pid)).mkdir(exist_ok=True)
    (proc / str(pid) / "stat").write_text(stat_line(pid, name, utime, stime))
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(arg.encode() for arg in cmdline))


def test_process_cpu_is_user_plus_system_even_with_a_parenthesised_name(proc: Path) -> None:
    add_process(proc, 42, "python (worker) 1", 3 * TICKS, TICKS)

    assert cpu.process_cpu_s(42, proc) == 4.0
    assert cpu.process_cpu_s(43, proc) is None  # gone


def test_machine_busy_leaves_out_idle_and_iowait(proc: Path) -> None:
    (proc / "stat").write_text(machine_line(2 * TICKS, TICKS, 50 * TICKS, TICKS))

    assert cpu.machine_busy_s(proc) == 4.0


def test_the_broker_is_the_kafka_process_listening_on_the_port(proc: Path, tmp_path: Path) -> None:
    for port in (9092, 19192):
        (tmp_path / f"{port}.properties").write_text(
            f"node.id=1\nlisteners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:1\n"
        )
    add_process(proc, 10, "java", 0, 0, "java", "kafka.Kafka", str(tmp_path / "9092.properties"))
    add_process(proc, 11, "java", 0, 0, "java", "kafka.Kafka", str(tmp_path / "19192.properties"))
    add_process(proc, 12, "python", 0, 0, "python", "-m", "kafka.Kafka")  # no properties file

    assert cpu.broker_pid(19192, proc) == 11
    assert cpu.broker_pid(9092, proc) == 10
    assert cpu.broker_pid(1919, proc) is None


def add_thread(proc: Path, pid: int, tid: int, name: str, utime: int) -> None:
    task = proc / str(pid) / "task" / str(tid)
    task.mkdir(parents=True, exist_ok=True)
    (task / "comm").write_text(f"{name}\n")
    (task / "stat").write_text(stat_line(tid, name, utime, 0))


def test_the_jit_is_the_c1_and_c2_compiler_threads(proc: Path) -> None:
    add_process(proc, 7, "java", 9 * TICKS, 0)
    add_thread(proc, 7, 8, "C2 CompilerThre", 2 * TICKS)
    add_thread(proc, 7, 9, "C1 CompilerThre", TICKS)
    add_thread(proc, 7, 10, "data-plane-kafk", 6 * TICKS)

    assert cpu.jit_cpu_s(7, proc) == 3.0
    assert cpu.jit_cpu_s(8, proc) is None  # not a process


def test_the_meter_reports_cores_per_group_over_the_wall_time(
    proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_process(proc, 1, "java", 0, 0)
    add_process(proc, 2, "python", 0, 0)
    add_process(proc, 3, "python", 0, 0)
    clock = iter([100.0, 102.0])
    monkeypatch.setattr(cpu.time, "perf_counter", lambda: next(clock))
    add_thread(proc, 1, 4, "C2 CompilerThre", 0)
    meter = cpu.CpuMeter(
        {"broker": [1], "workers": [2, 3], "absent": [9], "none": []},
        jit_of={"broker": [1]},
        proc=proc,
    )

    meter.start()
    add_process(proc, 1, "java", TICKS, TICKS // 2)  # 1.5 s of CPU in 2 s
    add_process(proc, 2, "python", TICKS // 2, 0)
    add_process(proc, 3, "python", TICKS // 2, TICKS // 2)
    add_thread(proc, 1, 4, "C2 CompilerThre", TICKS // 5)  # 0.2 s of it compiling
    (proc / "stat").write_text(machine_line(100 + 3 * TICKS, 50 + TICKS, 1000, 0))
    cores = meter.cores()

    assert cores == {
        "machine": 2.0,
        "broker": 0.75,
        "workers": 0.75,
        "absent": None,
        "none": None,
        "broker_jit": 0.1,
    }
