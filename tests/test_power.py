"""mmfree.power: sensor parsing on recorded samples, energy integration, recorder, plot."""

import os
import stat
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest

from mmfree import power
from mmfree.errors import MMFreeError
from mmfree.power import PowerError, Trace

DATA = os.path.join(os.path.dirname(__file__), "data", "power")


def data(name):
    return os.path.join(DATA, name)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


# ------------------------------------------------------------------------------- import

def test_imports_with_numpy_alone():
    code = ("import sys, mmfree.power; "
            "bad = [m for m in ('torch', 'pynq', 'matplotlib', 'pandas', 'pynvml') if m in sys.modules]; "
            "assert not bad, bad; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok"


def test_power_error_is_mmfree_error():
    assert issubclass(PowerError, MMFreeError)


# ------------------------------------------------------------------------------- hwmon

def make_hwmon(root):
    write(root / "hwmon0" / "name", "cpu_thermal\n")
    write(root / "hwmon0" / "temp1_input", "41000\n")
    write(root / "hwmon1" / "name", "ina260_u14\n")
    write(root / "hwmon1" / "power1_input", "4875000\n")   # microwatts
    write(root / "hwmon1" / "curr1_input", "975\n")
    write(root / "hwmon1" / "in1_input", "5000\n")
    write(root / "hwmon2" / "name", "ina226_u80\n")
    write(root / "hwmon2" / "curr1_input", "1500\n")       # mA
    write(root / "hwmon2" / "in1_input", "12000\n")        # mV
    return root


def test_hwmon_finds_ina260_by_name_and_reads_microwatts(tmp_path):
    root = make_hwmon(tmp_path / "hwmon")
    assert power.find_hwmon(root=str(root)) == str(root / "hwmon1")
    s = power.HwmonSensor(root=str(root))
    assert s.name == "hwmon:ina260_u14"
    assert s.read_watts() == pytest.approx(4.875)
    write(root / "hwmon1" / "power1_input", "5120000\n")
    assert s.read_watts() == pytest.approx(5.12)


def test_hwmon_current_times_voltage_and_prefix_match(tmp_path):
    root = make_hwmon(tmp_path / "hwmon")
    s = power.HwmonSensor(root=str(root), names=("ina226",))   # prefix of ina226_u80
    assert s.path == str(root / "hwmon2")
    assert s.read_watts() == pytest.approx(18.0)                 # 1.5 A x 12 V


def test_hwmon_errors(tmp_path):
    root = make_hwmon(tmp_path / "hwmon")
    with pytest.raises(PowerError, match="no hwmon device named"):
        power.HwmonSensor(root=str(root), names=("ina999",))
    with pytest.raises(PowerError, match="neither power1_input"):
        power.HwmonSensor(path=str(root / "hwmon0"))
    s = power.HwmonSensor(root=str(root))
    write(root / "hwmon1" / "power1_input", "garbage\n")
    with pytest.raises(PowerError, match="does not hold a number"):
        s.read_watts()
    os.remove(root / "hwmon1" / "power1_input")
    with pytest.raises(PowerError, match=r"cannot read sensor file .*power1_input"):
        s.read_watts()


# -------------------------------------------------------------------------------- RAPL

def make_rapl(root, e0=1_000_000, e1=5_000_000, maxr=262143328850):
    for zone, name, e in (("intel-rapl:0", "package-0", e0), ("intel-rapl:1", "package-1", e1),
                          ("intel-rapl:0:0", "core", 999)):
        write(root / zone / "name", name + "\n")
        write(root / zone / "energy_uj", f"{e}\n")
        write(root / zone / "max_energy_range_uj", f"{maxr}\n")
    write(root / "intel-rapl-mmio:0" / "name", "package-0\n")
    return root


def test_rapl_sums_packages_and_unwraps(tmp_path):
    maxr = 262143328850
    root = make_rapl(tmp_path / "powercap", e0=maxr - 2_000_000, e1=10_000_000, maxr=maxr)
    s = power.RaplSensor(root=str(root))
    assert s.name == "rapl:package-0+package-1"          # sub-zone core and mmio not taken
    assert s.has_energy_counter
    assert s.read_joules() == pytest.approx(0.0)
    # package-0 wraps: maxr-2 J -> 3 J is +5 J; package-1 +1.5 J
    write(root / "intel-rapl:0" / "energy_uj", "3000000\n")
    write(root / "intel-rapl:1" / "energy_uj", "11500000\n")
    assert s.read_joules() == pytest.approx(6.5)
    write(root / "intel-rapl:0" / "energy_uj", "4000000\n")
    assert s.read_joules() == pytest.approx(7.5)


def test_rapl_watts_from_energy_difference(tmp_path, monkeypatch):
    root = make_rapl(tmp_path / "powercap")
    s = power.RaplSensor(root=str(root), domains=["intel-rapl:0"], prime_s=0.0)
    clock = iter([10.0, 10.5, 12.5])
    monkeypatch.setattr(power.time, "perf_counter", lambda: next(clock))
    # +0.5 J during the 0.5 s prime
    monkeypatch.setattr(power.time, "sleep", lambda s: write(root / "intel-rapl:0" / "energy_uj", "1500000\n"))
    assert s.read_watts() == pytest.approx(1.0)
    write(root / "intel-rapl:0" / "energy_uj", "61500000\n")    # +60 J over 2 s
    assert s.read_watts() == pytest.approx(30.0)


def test_rapl_errors(tmp_path):
    with pytest.raises(PowerError, match="no RAPL domain"):
        power.RaplSensor(root=str(tmp_path))
    root = make_rapl(tmp_path / "powercap")
    os.remove(root / "intel-rapl:1" / "energy_uj")
    with pytest.raises(PowerError, match=r"cannot read sensor file .*intel-rapl:1/energy_uj"):
        power.RaplSensor(root=str(root))


# -------------------------------------------------------------------------------- NVML

def test_parse_nvidia_smi_recorded_outputs():
    with open(data("nvidia_smi_power.txt")) as f:
        assert power.parse_nvidia_smi_power(f.read()) == [87.34]
    with open(data("nvidia_smi_power_2gpu.txt")) as f:
        assert power.parse_nvidia_smi_power(f.read()) == [87.34, 412.09]
    assert power.parse_nvidia_smi_power("71.20 W\n") == [71.2]
    with open(data("nvidia_smi_power_na.txt")) as f:
        with pytest.raises(PowerError, match=r"line 1: not a power reading: '\[N/A\]'"):
            power.parse_nvidia_smi_power(f.read())
    with pytest.raises(PowerError, match="no power reading"):
        power.parse_nvidia_smi_power("\n")


def fake_smi(tmp_path, power_file):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\n"
                      "case \"$1\" in\n"
                      "  --query-gpu=name) echo 'NVIDIA H200';;\n"
                      f"  --query-gpu=power.draw) cat '{power_file}';;\n"
                      "  *) echo bad query >&2; exit 2;;\n"
                      "esac\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_nvml_sensor_nvidia_smi_fallback(tmp_path):
    smi = fake_smi(tmp_path, data("nvidia_smi_power.txt"))
    s = power.NvmlSensor(0, backend="smi", smi=smi)
    assert s.backend == "smi" and s.gpu_name == "NVIDIA H200"
    assert s.read_watts() == pytest.approx(87.34)
    assert s.read_joules() is None and not s.has_energy_counter
    (tmp_path / "na").mkdir()
    bad = fake_smi(tmp_path / "na", data("nvidia_smi_power_na.txt"))
    with pytest.raises(PowerError, match="not a power reading"):
        power.NvmlSensor(0, backend="smi", smi=bad)
    with pytest.raises(PowerError, match="neither pynvml nor"):
        power.NvmlSensor(0, backend="smi", smi=str(tmp_path / "missing-smi"))


def fake_pynvml(energy=True):
    m = types.ModuleType("pynvml")
    st = {"mw": 95_500, "mj": 1_000_000, "init": 0}

    def energy_fn(h):
        if not energy:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return st["mj"]

    m.nvmlInit = lambda: st.__setitem__("init", st["init"] + 1)
    m.nvmlShutdown = lambda: st.__setitem__("init", st["init"] - 1)
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H200"
    m.nvmlDeviceGetPowerUsage = lambda h: st["mw"]
    m.nvmlDeviceGetTotalEnergyConsumption = energy_fn
    m.state = st
    return m


def test_nvml_sensor_pynvml_with_energy_counter(monkeypatch):
    fake = fake_pynvml(energy=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    s = power.NvmlSensor(0)
    assert s.backend == "nvml" and s.gpu_name == "NVIDIA H200" and s.has_energy_counter
    assert s.read_watts() == pytest.approx(95.5)
    assert s.read_joules() == pytest.approx(1000.0)
    fake.state["mj"] += 2500
    assert s.read_joules() == pytest.approx(1002.5)
    s.close()
    assert fake.state["init"] == 0


def test_nvml_sensor_without_energy_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy=False))
    s = power.NvmlSensor(0, backend="nvml")
    assert not s.has_energy_counter and s.read_joules() is None
    assert s.read_watts() == pytest.approx(95.5)


# --------------------------------------------------------------------------- pynq rails

class FakeSensor:
    def __init__(self, name, value):
        self.name, self.value = name, value


class FakeRail:
    def __init__(self, name, watts):
        self.name = name
        self.power = None if watts is None else FakeSensor(f"{name}_power", watts)


def zcu104_rails():
    return {r.name: r for r in (FakeRail("12V", 13.75), FakeRail("INT", 2.5), FakeRail("1V8", 0.375),
                                FakeRail("MGTRA", None))}


def test_pynq_rails_default_board_input_and_named_sum():
    s = power.PynqRailSensor(rails_dict=zcu104_rails())
    assert s.rails == ["12V"] and "board input" in s.description
    assert s.read_watts() == pytest.approx(13.75)
    s2 = power.PynqRailSensor(rails=["INT", "1V8"], rails_dict=zcu104_rails())
    assert s2.read_watts() == pytest.approx(2.875) and s2.name == "pynq:INT+1V8"
    assert [x.name for x in s2.sensors] == ["INT_power", "1V8_power"]


def test_pynq_rails_sum_all_without_board_input_and_errors():
    rfsoc = {r.name: r for r in (FakeRail("VCCp0V85", 5.6), FakeRail("VCCp3V3", 0.4))}
    s = power.PynqRailSensor(rails_dict=rfsoc)
    assert s.rails == ["VCCp0V85", "VCCp3V3"] and s.read_watts() == pytest.approx(6.0)
    with pytest.raises(PowerError, match="no rail with a power sensor"):
        power.PynqRailSensor(rails_dict={})
    with pytest.raises(PowerError, match=r"rail\(s\) \['VCCAUX'\] not found"):
        power.PynqRailSensor(rails=["VCCAUX"], rails_dict=zcu104_rails())
    rfsoc["VCCp0V85"].power.value = None
    with pytest.raises(PowerError, match="returned no value"):
        s.read_watts()


class FakeFrame:
    """The parts of a pandas DataFrame that pynq.DataRecorder.frame offers."""

    def __init__(self, index, cols):
        self.index, self._cols = index, cols
        self.columns = list(cols)

    def __getitem__(self, k):
        return self._cols[k]


def test_trace_from_datarecorder_frame_marks_and_energy():
    t0 = np.datetime64("2026-11-20T10:00:00.000", "ns")
    idx = t0 + (np.arange(9) * 500).astype("timedelta64[ms]")
    p12 = np.array([10, 10, 10, 10, 14, 14, 14, 10, 10], dtype=float)
    pint = np.array([1, 1, 1, 1, 3, 3, 3, 1, 1], dtype=float)
    mark = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    fr = FakeFrame(idx, {"12V_power": p12, "INT_power": pint, "12V_voltage": np.full(9, 12.0), "Mark": mark})
    tr = power.trace_from_datarecorder(fr)
    assert tr.sensor == "pynq:12V_power+INT_power"
    np.testing.assert_allclose(tr.watts, p12 + pint)
    base = t0.astype("datetime64[ns]").astype(np.int64) / 1e9
    np.testing.assert_allclose(tr.t - base, np.arange(9) * 0.5)
    assert [lab for _, lab in tr.marks] == ["mark1", "mark2"]
    a, b = tr.mark_time("mark1"), tr.mark_time("mark2")
    assert (a - base, b - base) == pytest.approx((2.0, 3.5))
    res = power.energy_from_trace(tr, run=(a, b), idle=(tr.t[0], tr.t[3]))
    # DataRecorder semantics: the first sample after mark() carries the new Mark, so the run is
    # samples 4..7 = 17, 17, 17, 11 W, 0.5 s apart
    assert res.joules_gross == pytest.approx(0.5 * 17 + 0.5 * 17 + 0.5 * 14)
    assert res.idle_watts == pytest.approx(11.0)
    assert res.joules_net == pytest.approx(res.joules_gross - 11.0 * 1.5)
    only12 = power.trace_from_datarecorder(fr, columns=["12V_power"])
    np.testing.assert_allclose(only12.watts, p12)
    with pytest.raises(PowerError, match="no column"):
        power.trace_from_datarecorder(fr, columns=["5V0_power"])


# ---------------------------------------------------------------------------- meter CSV

def test_load_meter_csv_ms_mw_and_energy():
    tr = power.load_meter_csv(data("meter_usb_ms_mw.csv"), time_col="elapsed_ms", watts_col="power_mW",
                              time_unit="ms", power_unit="mW")
    np.testing.assert_allclose(tr.t, [0, 0.5, 1, 1.5, 2, 2.5, 3])
    np.testing.assert_allclose(tr.watts, [3, 3, 3, 5, 7, 9, 3])
    res = power.energy_from_trace(tr, run=(1.0, 2.5), idle=(0.0, 1.0), tokens=3)
    assert res.joules_gross == pytest.approx(0.5 * (4 + 6 + 8))      # ramp 3->9 W over 1.5 s
    assert res.idle_watts == pytest.approx(3.0)
    assert res.joules_net == pytest.approx(9.0 - 4.5)
    assert res.joules_per_token == pytest.approx(1.5)
    assert res.tokens_per_s == pytest.approx(2.0)
    assert res.energy_source == "trapezoid"


def test_load_meter_csv_iso_volts_amps_semicolon():
    tr = power.load_meter_csv(data("meter_um25c_iso.csv"), time_col="Time", watts_col=None,
                              volts_col="Voltage(V)", amps_col="Current(A)", time_unit="iso")
    assert len(tr) == 5                                             # blank line skipped
    np.testing.assert_allclose(np.diff(tr.t), 0.5)
    assert tr.t[0] == pytest.approx(1795168800.0)                   # 2026-11-20T10:00:00Z
    np.testing.assert_allclose(tr.watts, [4.998, 4.998, 7.62, 7.62, 4.998])


def test_load_meter_csv_errors_name_file_and_line(tmp_path):
    bad = data("meter_malformed.csv")
    with pytest.raises(PowerError) as e:
        power.load_meter_csv(bad)
    assert "meter_malformed.csv: line 4: cannot parse '0.2,--'" in str(e.value)
    with pytest.raises(PowerError, match="meter_backwards.csv: line 4: time goes backwards"):
        power.load_meter_csv(data("meter_backwards.csv"))
    with pytest.raises(PowerError, match=r"meter_usb_ms_mw.csv: line 1: no column 'watts'"):
        power.load_meter_csv(data("meter_usb_ms_mw.csv"), time_col="elapsed_ms")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(PowerError, match="empty file"):
        power.load_meter_csv(str(empty))
    with pytest.raises(PowerError, match="cannot read meter CSV"):
        power.load_meter_csv(str(tmp_path / "nope.csv"))
    with pytest.raises(PowerError, match="unknown power unit"):
        power.load_meter_csv(bad, power_unit="hp")


def test_csv_meter_sensor_reads_last_complete_line(tmp_path):
    p = tmp_path / "live.csv"
    p.write_text("time,watts\n0.0,2.5\n0.1,2.75\n0.2,3.")
    s = power.CsvMeterSensor(str(p))
    assert s.read_watts() == pytest.approx(2.75)       # last line still being written
    with open(p, "a") as f:
        f.write("125\n")
    assert s.read_watts() == pytest.approx(3.125)
    with pytest.raises(PowerError, match="no column 'power'"):
        power.CsvMeterSensor(str(p), watts_col="power")


# ---------------------------------------------------------------------------- auto

def test_auto_sensor_order_and_none(tmp_path, capsys):
    hw = make_hwmon(tmp_path / "hwmon")
    rp = make_rapl(tmp_path / "powercap")
    s = power.auto_sensor(hwmon_root=str(hw), powercap_root=str(rp), try_pynq=False, try_nvml=False)
    assert isinstance(s, power.HwmonSensor)
    s = power.auto_sensor(hwmon_root=str(tmp_path / "none"), powercap_root=str(rp), try_pynq=False,
                          try_nvml=False, verbose=True)
    assert isinstance(s, power.RaplSensor)
    out = capsys.readouterr().out
    assert "hwmon" in out and "USING" in out and "rapl" in out
    tried = power.probe_sensors(hwmon_root=str(tmp_path / "x"), powercap_root=str(tmp_path / "y"),
                                try_pynq=False, try_nvml=False)
    assert [k for k, s, _ in tried] == ["hwmon", "rapl"] and all(s is None for _, s, _ in tried)
    assert power.auto_sensor(hwmon_root=str(tmp_path / "x"), powercap_root=str(tmp_path / "y"),
                             try_pynq=False, try_nvml=False) is None


# ---------------------------------------------------------------------- integration math

def test_integrate_constant_ramp_and_interpolated_ends():
    t = np.linspace(0.0, 10.0, 101)
    assert power.integrate(t, np.full_like(t, 5.0), 2.0, 7.0)[0] == pytest.approx(25.0)
    # P = 2t: integral from 1.05 to 3.33 = t^2 difference, exact for linear power
    e, n = power.integrate(t, 2 * t, 1.05, 3.33)
    assert e == pytest.approx(3.33 ** 2 - 1.05 ** 2)
    assert n == 23                                       # samples 1.1 .. 3.3
    # a parabola converges to the integral with the sampling step squared
    e = power.integrate(t, t ** 2, 0.0, 10.0)[0]
    assert e == pytest.approx(1000 / 3, rel=1e-3) and e > 1000 / 3


def test_energy_idle_subtraction_ramp_and_tokens():
    # idle 3 W on [0, 5], then a ramp 3 -> 13 W on [5, 10]
    t = np.linspace(0.0, 10.0, 201)
    w = np.where(t <= 5, 3.0, 3.0 + 2.0 * (t - 5))
    res = power.energy_from_trace(Trace(t, w, sensor="fake"), run=(5.0, 10.0), idle=(0.0, 5.0), tokens=10)
    assert res.joules_gross == pytest.approx(40.0)
    assert res.idle_watts == pytest.approx(3.0)
    assert res.joules_net == pytest.approx(25.0)
    assert res.avg_watts == pytest.approx(8.0)
    assert res.joules_per_token == pytest.approx(2.5)
    assert res.joules_per_token_gross == pytest.approx(4.0)
    assert res.tokens_per_s == pytest.approx(2.0)
    d = res.to_dict()
    assert d["joules_net"] == pytest.approx(25.0) and "trace" not in d and d["run"] == [5.0, 10.0]
    # a given idle power overrides the idle window; no idle: no subtraction
    assert power.energy_from_trace(Trace(t, w), run=(5, 10), idle_watts=1.0).joules_net == pytest.approx(35.0)
    assert power.energy_from_trace(Trace(t, w), run=(5, 10)).joules_net == pytest.approx(40.0)


def test_energy_prefers_counter():
    t = np.linspace(0, 4, 41)
    w = np.full_like(t, 10.0)                 # a 1-s averaged power readout lags...
    j = 100.0 + np.cumsum(np.r_[0.0, np.where(t[1:] <= 2, 0.5, 1.5)])   # ...the counter: 5 W then 15 W
    tr = Trace(t, w, joules=j)
    res = power.energy_from_trace(tr, run=(2.0, 4.0), idle=(0.0, 2.0))
    assert res.energy_source == "counter"
    assert res.joules_gross == pytest.approx(30.0)
    assert res.idle_watts == pytest.approx(5.0)
    assert res.joules_net == pytest.approx(20.0)
    assert res.joules_trapezoid == pytest.approx(20.0)
    assert power.energy_from_trace(tr, run=(2.0, 4.0), use_counter=False).joules_gross == pytest.approx(20.0)


def test_too_few_samples_and_bad_windows():
    t = np.array([0.0, 1.0, 2.0])
    tr = Trace(t, np.array([1.0, 1.0, 1.0]))
    with pytest.raises(PowerError, match="too few samples: 0 in a 0.100 s window"):
        power.energy_from_trace(tr, run=(0.2, 0.3))
    with pytest.raises(PowerError, match="not covered by the samples"):
        power.energy_from_trace(tr, run=(1.5, 2.5))
    with pytest.raises(PowerError, match="empty window"):
        power.energy_from_trace(tr, run=(1.0, 1.0))
    with pytest.raises(PowerError, match="too few samples"):
        power.integrate(np.array([0.0]), np.array([1.0]), 0.0, 1.0)
    with pytest.raises(PowerError, match="tokens must be positive"):
        power.energy_from_trace(tr, run=(0.0, 2.0), tokens=0)


# ---------------------------------------------------------------------------- recorder

class StepSensor(power.PowerSensor):
    """3 W idle, 7 W while ``busy`` is set; an exact energy counter from the switch times."""

    name, description = "step", "fake step sensor"

    def __init__(self, counter=True):
        self.busy = False
        self.counter = counter
        self._lock = threading.Lock()
        self._t = time.time()
        self._e = 0.0

    def set_busy(self, busy):
        with self._lock:
            self._advance()
            self.busy = busy

    def _advance(self):
        now = time.time()
        self._e += (7.0 if self.busy else 3.0) * (now - self._t)
        self._t = now

    def read_watts(self):
        return 7.0 if self.busy else 3.0

    @property
    def has_energy_counter(self):
        return self.counter

    def read_joules(self):
        if not self.counter:
            return None
        with self._lock:
            self._advance()
            return self._e


def test_power_meter_block_with_counter():
    s = StepSensor(counter=True)
    with power.PowerMeter(s, idle_s=0.15, interval_s=0.01) as pm:
        s.set_busy(True)
        time.sleep(0.25)
        s.set_busy(False)
        pm.tokens = 50
    r = pm.result
    assert r.energy_source == "counter"
    assert r.idle_watts == pytest.approx(3.0, rel=1e-3)
    assert r.avg_watts == pytest.approx(7.0, rel=0.02)
    assert r.joules_net == pytest.approx(4.0 * r.duration_s, rel=0.03)
    assert r.joules_per_token == pytest.approx(r.joules_net / 50)
    assert r.samples >= 10
    assert [lab for _, lab in r.trace.marks] == ["idle_start", "idle_end", "run_start", "run_end"]


def test_measure_energy_callable_tokens_from_return_value():
    s = StepSensor(counter=False)

    def work():
        s.set_busy(True)
        time.sleep(0.3)
        s.set_busy(False)
        return 30

    r = power.measure_energy(work, s, idle_s=0.1, interval_s=0.01)
    assert r.energy_source == "trapezoid" and r.tokens == 30
    assert r.idle_watts == pytest.approx(3.0)
    # each of the two 4 W switches falls inside one sampling gap g, and the trapezoid
    # mis-assigns at most 4 W x g / 2 there: bound the error by the largest gap in the run
    tt = r.trace.t[(r.trace.t >= r.run[0]) & (r.trace.t <= r.run[1])]
    gmax = float(np.diff(tt).max())
    assert abs(r.joules_net - 4.0 * r.duration_s) <= 4.0 * gmax + 1e-9
    r2 = power.measure_energy(lambda: None, s, idle_s=0, idle_watts=2.0, tokens=5)
    assert r2.idle_watts == 2.0 and r2.idle is None and r2.tokens == 5


def test_measure_energy_without_sensor_and_failing_sensor(monkeypatch):
    monkeypatch.setattr(power, "auto_sensor", lambda **k: None)
    with pytest.raises(PowerError, match="no power sensor found"):
        power.measure_energy(lambda: None)
    with pytest.raises(PowerError, match="no power sensor"):
        power.Recorder(None)

    class Dying(power.PowerSensor):
        name = "dying"

        def __init__(self):
            self.n = 0

        def read_watts(self):
            self.n += 1
            if self.n > 3:
                raise PowerError("gone")
            return 1.0

    rec = power.Recorder(Dying(), 0.005).start()
    time.sleep(0.1)
    with pytest.raises(PowerError, match="dying failed while recording: gone"):
        rec.stop()


# -------------------------------------------------------------------------------- plot

def test_plot_trace_writes_png(tmp_path):
    t = np.linspace(0.0, 10.0, 201)
    w = np.where(t <= 5, 3.0, 3.0 + 2.0 * (t - 5))
    tr = Trace(t + 1.7e9, w, marks=[(1.7e9 + 5.0, "run_start")], sensor="fake")
    res = power.energy_from_trace(tr, run=(1.7e9 + 5, 1.7e9 + 10), idle=(1.7e9, 1.7e9 + 5), tokens=10)
    p = power.plot_trace(res, str(tmp_path / "sub" / "trace.png"))
    with open(p, "rb") as f:
        head = f.read(8)
    assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(p) > 5000
    p2 = power.plot_trace(tr, str(tmp_path / "raw.png"), title="raw")
    assert os.path.getsize(p2) > 3000
    with pytest.raises(PowerError, match="nothing to plot"):
        power.plot_trace(Trace(np.array([]), np.array([])), str(tmp_path / "x.png"))
