"""Power and energy measurement: one sensor interface, a sampling recorder, energy per token.

Imports with numpy alone: pynq, pynvml and matplotlib are imported lazily, when a sensor or
the plot needs them, so this module loads on a board that has none of them.

Sensors (all :class:`PowerSensor`: ``name``, ``read_watts()``, optional ``read_joules()``):

=====================  ==============================================================  ==========
class                  source                                                          boards
=====================  ==============================================================  ==========
PynqRailSensor         ``pynq.get_rails()`` (libsensors).  Default: the board-input    ZCU104,
                       rail ``12V`` when present (whole board), else the sum of every  RFSoC
                       rail's power; ``rails=[...]`` sums the named rails instead.
                       (RFSoC4x2 exposes ``VCCp0V85`` = VCCINT only: say so when
                       quoting.)  :func:`trace_from_datarecorder` reads a
                       ``pynq.DataRecorder`` frame.
HwmonSensor            ``/sys/class/hwmon/hwmonN/`` found by its ``name`` file         KV260,
                       (``ina260_u14`` on the KV260 carrier: the 5 V SOM input),       KR260
                       ``power1_input`` in microwatts (else curr1_input mA x
                       in1_input mV).
NvmlSensor             NVML through ``pynvml`` (package nvidia-ml-py): power in mW     GPU hosts
                       and the total-energy counter in mJ when the GPU has one; else
                       ``nvidia-smi --query-gpu=power.draw``.
RaplSensor             ``/sys/class/powercap/intel-rapl:N/energy_uj`` (package          x86 hosts
                       domains, summed), wrapping at ``max_energy_range_uj``.
CsvMeterSensor         the last row of a CSV an external meter's logger is writing;    PYNQ-Z2
                       :func:`load_meter_csv` reads a finished export as a Trace.
=====================  ==============================================================  ==========

:func:`auto_sensor` picks the board's own sensor first (boards.json ``power_sensor``: KV260/KR260
the INA260 ``ina260_u14``, ZCU104 the ``12V`` rail; PYNQ-Z2 has none and says so), then the first
that works in the order board rails, hwmon, NVML, RAPL, and returns None when there is none;
:func:`probe_sensors` says why each was or was not taken. Every sensor's ``measures`` says what its
reading covers (KV260: the SOM's 5 V input, not the carrier; ZCU104: the whole board's 12 V input).

Energy of a run (docs/benchmarks.md): record idle for ``idle_s`` seconds, mark, run, mark;
``E_gross`` = trapezoid integral of power over the run (or the difference of the hardware
energy counter when the sensor has one: RAPL, NVML), ``E_net = E_gross - P_idle * T``,
J/token = ``E_net / tokens``::

    from mmfree import power
    sensor = power.auto_sensor()              # or power.HwmonSensor(), power.NvmlSensor(0), ...
    res = power.measure_energy(lambda: generate(128), sensor, idle_s=5, tokens=128)
    print(res.summary()); power.plot_trace(res, "power.png")

or, around a block::

    with power.PowerMeter(sensor, idle_s=5) as pm:
        generate(128)
        pm.tokens = 128
    res = pm.result

For an external meter (no live reading), record wall-clock marks and compute afterwards::

    trace = power.load_meter_csv("meter.csv", time_col="Time", watts_col="Power(W)")
    res = power.energy_from_trace(trace, run=(t_start, t_end), idle=(t0, t_start))
"""

from __future__ import annotations

import csv
import glob
import math
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import MMFreeError

__all__ = [
    "PowerError", "PowerSensor", "PynqRailSensor", "HwmonSensor", "NvmlSensor", "RaplSensor",
    "CsvMeterSensor", "Trace", "Recorder", "EnergyResult", "PowerMeter", "auto_sensor",
    "probe_sensors", "find_hwmon", "parse_nvidia_smi_power", "load_meter_csv",
    "trace_from_datarecorder", "integrate", "energy_from_trace", "measure_idle",
    "measure_energy", "plot_trace",
]


class PowerError(MMFreeError):
    """No sensor, an unreadable sensor file, too few samples, a malformed meter CSV."""


# =============================================================================================
# Sensors
# =============================================================================================

class PowerSensor:
    """A power reading source.

    ``read_watts()`` returns the present power in watts. ``read_joules()`` returns a
    monotonically increasing energy counter in joules (any origin) when the hardware keeps
    one, else None; the recorder then prefers counter differences over integrating samples.
    """

    name: str = "sensor"
    #: one line saying what is measured (which rail, which device)
    description: str = ""
    #: what the reading covers, in words a report can quote (boards.json power_sensor.measures for
    #: the board's own sensor: KV260 SOM 5 V input, ZCU104 whole-board 12 V input)
    measures: str = ""

    def read_watts(self) -> float:
        raise NotImplementedError

    def read_joules(self) -> Optional[float]:
        return None

    @property
    def has_energy_counter(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.description}>"


def _read_number(path: str) -> float:
    try:
        with open(path, "r", encoding="ascii") as f:
            text = f.read().strip()
    except OSError as e:
        raise PowerError(f"cannot read sensor file {path}: {e.strerror or e}") from e
    try:
        return float(text)
    except ValueError:
        raise PowerError(f"sensor file {path} does not hold a number: {text[:40]!r}") from None


def _board_measures(kind: str, what: str) -> Optional[str]:
    """boards.json power_sensor.measures of the board whose sensor this is (kind and device/rail), or None."""
    try:
        from . import boards
        for name in boards.names():
            ps = boards.get(name).get("power_sensor", {})
            if ps.get("kind") == kind and (what == ps.get("device") or what in ps.get("rails", [])):
                return "%s: %s" % (name, ps["measures"])
    except Exception:  # boards.json unreadable: the generic wording
        return None
    return None


# ------------------------------------------------------------------------------- pynq rails

#: rails that measure the whole board's input, tried in this order before summing all rails
BOARD_INPUT_RAILS = ("12V", "VIN", "PSU", "12V_IN", "VCC12")


class PynqRailSensor(PowerSensor):
    """Power from ``pynq.get_rails()`` (ZCU104, RFSoC boards; libsensors underneath).

    ``rails``: names to sum. Default: the first of :data:`BOARD_INPUT_RAILS` present (ZCU104:
    ``12V``, the board's input: total board power), else the sum of all rails' ``power``
    sensors (RFSoC4x2: VCCINT and the other regulated rails, not the board input).
    ``rails_dict`` may be given instead of calling ``pynq.get_rails()`` (tests, custom configs).
    """

    def __init__(self, rails: Optional[Sequence[str]] = None, rails_dict: Optional[dict] = None):
        if rails_dict is None:
            try:
                import pynq  # noqa: WPS433 (lazy: only on a board)
            except ImportError as e:
                raise PowerError(f"pynq is not importable ({e}); PynqRailSensor needs a PYNQ board") from e
            rails_dict = pynq.get_rails()
        rails_dict = dict(rails_dict or {})
        powered = {k: r for k, r in rails_dict.items() if getattr(r, "power", None) is not None}
        if not powered:
            raise PowerError("pynq.get_rails() found no rail with a power sensor "
                             "(no sensors.d config on this board?)")
        if rails is None:
            chosen = next(([r] for r in BOARD_INPUT_RAILS if r in powered), sorted(powered))
        else:
            missing = [r for r in rails if r not in powered]
            if missing:
                raise PowerError(f"rail(s) {missing} not found; rails with power: {sorted(powered)}")
            chosen = list(rails)
        self.rails = chosen
        self._sensors = [powered[r].power for r in chosen]
        self.name = "pynq:" + "+".join(chosen)
        whole = len(chosen) == 1 and chosen[0] in BOARD_INPUT_RAILS
        self.description = ("board input rail " + chosen[0] if whole
                            else "sum of rails " + ", ".join(chosen))
        self.measures = (_board_measures("pynq-rails", chosen[0]) if len(chosen) == 1 else None) or (
            "the board input (rail %s)" % chosen[0] if whole else
            "the sum of the regulated rails %s, not the board input" % ", ".join(chosen))

    @property
    def sensors(self):
        """The pynq Sensor objects summed (pass them to ``pynq.DataRecorder(*sensor.sensors)``)."""
        return list(self._sensors)

    def read_watts(self) -> float:
        total = 0.0
        for s in self._sensors:
            v = s.value
            if v is None:
                raise PowerError(f"pynq sensor {getattr(s, 'name', s)!r} returned no value")
            total += float(v)
        return total


def trace_from_datarecorder(frame, columns: Optional[Sequence[str]] = None) -> "Trace":
    """A :class:`Trace` from a ``pynq.DataRecorder.frame``.

    The frame is indexed by wall-clock timestamps, has one column per recorded sensor (named
    like ``12V_power``) and a ``Mark`` column that ``rec.mark()`` increments. Power = sum of
    ``columns`` (default: every column ending in ``_power``, else every non-Mark column).
    Each change of ``Mark`` becomes a mark at the first sample with the new value.
    """
    cols = [str(c) for c in frame.columns]
    if columns is None:
        columns = [c for c in cols if c.endswith("_power")] or [c for c in cols if c != "Mark"]
    missing = [c for c in columns if c not in cols]
    if missing or not columns:
        raise PowerError(f"DataRecorder frame has no column(s) {missing or columns}; columns: {cols}")
    idx = np.asarray(frame.index)
    if np.issubdtype(idx.dtype, np.datetime64):
        t = idx.astype("datetime64[ns]").astype(np.int64) / 1e9
    elif idx.dtype == object:  # pandas Timestamps in an object index
        t = np.array([x.timestamp() for x in idx], dtype=np.float64)
    else:
        t = idx.astype(np.float64)
    w = np.zeros(len(t))
    for c in columns:
        w = w + np.asarray(frame[c], dtype=np.float64)
    marks: List[Tuple[float, str]] = []
    if "Mark" in cols:
        m = np.asarray(frame["Mark"])
        for i in np.nonzero(np.diff(m) != 0)[0] + 1:
            marks.append((float(t[i]), f"mark{int(m[i])}"))
    return Trace(t=t, watts=w, marks=marks, sensor="pynq:" + "+".join(columns))


# ------------------------------------------------------------------------------------ hwmon

#: hwmon ``name`` values taken by default, most specific first (KV260 carrier INA260 = U14)
HWMON_NAMES = ("ina260_u14", "ina260", "ina226", "ina219", "ina2xx")


def find_hwmon(names: Sequence[str] = HWMON_NAMES, root: str = "/sys/class/hwmon") -> Optional[str]:
    """The ``hwmonN`` folder whose ``name`` file is the first of ``names`` found (exact match
    first, then prefix), or None."""
    found: Dict[str, str] = {}
    for d in sorted(glob.glob(os.path.join(root, "hwmon*"))):
        try:
            with open(os.path.join(d, "name"), encoding="ascii") as f:
                found[d] = f.read().strip()
        except OSError:
            continue
    for want in names:
        for d, n in found.items():
            if n == want:
                return d
    for want in names:
        for d, n in found.items():
            if n.startswith(want):
                return d
    return None


class HwmonSensor(PowerSensor):
    """A Linux hwmon power monitor (KV260: ``ina260_u14``, the SOM's 5 V input).

    Reads ``power1_input`` (microwatts, the hwmon ABI); if the chip has none, ``curr1_input``
    (mA) x ``in1_input`` (mV). ``path`` is the hwmonN folder, else found by ``names``.
    """

    def __init__(self, path: Optional[str] = None, names: Sequence[str] = HWMON_NAMES,
                 root: str = "/sys/class/hwmon"):
        if path is None:
            path = find_hwmon(names, root)
            if path is None:
                raise PowerError(f"no hwmon device named {list(names)} under {root}")
        self.path = path
        try:
            with open(os.path.join(path, "name"), encoding="ascii") as f:
                chip = f.read().strip()
        except OSError:
            chip = os.path.basename(path)
        self._power = os.path.join(path, "power1_input")
        self._curr = os.path.join(path, "curr1_input")
        self._volt = os.path.join(path, "in1_input")
        if os.path.exists(self._power):
            self._mode = "power"
        elif os.path.exists(self._curr) and os.path.exists(self._volt):
            self._mode = "iv"
        else:
            raise PowerError(f"{path} ({chip}) has neither power1_input nor curr1_input+in1_input")
        self.name = f"hwmon:{chip}"
        self.description = f"{chip} at {path} ({'power1_input' if self._mode == 'power' else 'curr1 x in1'})"
        self.measures = _board_measures("hwmon", chip) or f"the rail {chip} monitors (hwmon {chip})"
        self.read_watts()  # fail now, not in the recorder thread

    def read_watts(self) -> float:
        if self._mode == "power":
            return _read_number(self._power) * 1e-6
        return _read_number(self._curr) * _read_number(self._volt) * 1e-6


# ------------------------------------------------------------------------------------- NVML

def parse_nvidia_smi_power(text: str, source: str = "nvidia-smi") -> List[float]:
    """Watts per GPU line from ``nvidia-smi --query-gpu=power.draw --format=csv,noheader,nounits``
    (also accepts a ``W`` suffix). ``[N/A]`` or other junk raises PowerError naming the line."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        s = s.split(",")[0].strip()
        if s.upper().endswith(" W"):
            s = s[:-2].strip()
        try:
            v = float(s)
        except ValueError:
            raise PowerError(f"{source}: line {i}: not a power reading: {line.strip()!r}") from None
        if not math.isfinite(v):
            raise PowerError(f"{source}: line {i}: not a finite power reading: {line.strip()!r}")
        out.append(v)
    if not out:
        raise PowerError(f"{source}: no power reading in output {text[:80]!r}")
    return out


class NvmlSensor(PowerSensor):
    """An NVIDIA GPU's board power through NVML (``pynvml`` from nvidia-ml-py), else nvidia-smi.

    With NVML, ``read_joules()`` uses ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the
    driver loaded; Volta and later) when the GPU supports it. ``backend``: "auto", "nvml" or
    "smi"; ``smi`` is the nvidia-smi command (a path, for tests).
    """

    def __init__(self, index: int = 0, backend: str = "auto", smi: str = "nvidia-smi"):
        self.index = int(index)
        self.smi = smi
        self._nvml = None
        self._handle = None
        self._energy_ok = False
        self.gpu_name = None
        if backend not in ("auto", "nvml", "smi"):
            raise PowerError(f"NvmlSensor backend must be auto, nvml or smi, not {backend!r}")
        if backend in ("auto", "nvml"):
            try:
                import pynvml  # lazy: nvidia-ml-py
                pynvml.nvmlInit()
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
                self._nvml = pynvml
                name = pynvml.nvmlDeviceGetName(self._handle)
                self.gpu_name = name.decode() if isinstance(name, bytes) else str(name)
                try:
                    pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                    self._energy_ok = True
                except Exception:  # NVMLError_NotSupported and friends
                    self._energy_ok = False
            except Exception as e:  # ImportError, NVMLError (no driver)
                if backend == "nvml":
                    raise PowerError(f"NVML unavailable: {e}") from e
                self._nvml = None
        if self._nvml is None:
            if shutil.which(self.smi) is None and not os.path.exists(self.smi):
                raise PowerError(f"neither pynvml nor {self.smi!r} is available")
            self.gpu_name = self._smi_query("name").strip() or None
        self.backend = "nvml" if self._nvml is not None else "smi"
        self.name = f"nvml:{self.index}"
        self.description = (f"GPU {self.index} ({self.gpu_name}) board power via {self.backend}"
                            + (", energy counter" if self._energy_ok else ""))
        self.read_watts()

    def _smi_query(self, what: str) -> str:
        cmd = [self.smi, f"--query-gpu={what}", "--format=csv,noheader,nounits", "-i", str(self.index)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PowerError(f"{' '.join(cmd)} failed: {e}") from e
        if p.returncode != 0:
            raise PowerError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[:200]}")
        return p.stdout

    @property
    def has_energy_counter(self) -> bool:
        return self._energy_ok

    def read_watts(self) -> float:
        if self._nvml is not None:
            try:
                return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
            except Exception as e:
                raise PowerError(f"NVML power read failed on GPU {self.index}: {e}") from e
        return parse_nvidia_smi_power(self._smi_query("power.draw"), source=self.smi)[0]

    def read_joules(self) -> Optional[float]:
        if not self._energy_ok:
            return None
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0
        except Exception as e:
            raise PowerError(f"NVML energy read failed on GPU {self.index}: {e}") from e

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None
            self._energy_ok = False


# ------------------------------------------------------------------------------------- RAPL

class RaplSensor(PowerSensor):
    """Linux powercap RAPL: the package domains ``intel-rapl:N`` (not sub-zones ``:N:M``)
    summed, unless ``domains`` names zone folders. ``energy_uj`` wraps at
    ``max_energy_range_uj``; the counter here is unwrapped (one wrap between two reads at most,
    which at a few hundred watts is minutes apart). ``read_watts`` = energy difference since the
    previous read divided by the time (the first read waits ``prime_s``)."""

    def __init__(self, root: str = "/sys/class/powercap", domains: Optional[Sequence[str]] = None,
                 prime_s: float = 0.05):
        if domains is None:
            zones = sorted(d for d in glob.glob(os.path.join(root, "intel-rapl:*"))
                           if os.path.basename(d).count(":") == 1)
        else:
            zones = [d if os.path.isabs(d) else os.path.join(root, d) for d in domains]
        if not zones:
            raise PowerError(f"no RAPL domain intel-rapl:N under {root}")
        self.zones = zones
        self._max = [_read_number(os.path.join(z, "max_energy_range_uj")) for z in zones]
        self._last = [self._raw(i) for i in range(len(zones))]  # raises when unreadable (root-only)
        self._acc = 0.0  # unwrapped microjoules since construction
        self._lock = threading.Lock()
        self._wprev: Optional[Tuple[float, float]] = None
        self.prime_s = prime_s
        names = []
        for z in zones:
            try:
                with open(os.path.join(z, "name"), encoding="ascii") as f:
                    names.append(f.read().strip())
            except OSError:
                names.append(os.path.basename(z))
        self.name = "rapl:" + "+".join(names)
        self.description = "RAPL " + ", ".join(f"{n} ({os.path.basename(z)})" for n, z in zip(names, zones))

    def _raw(self, i: int) -> float:
        return _read_number(os.path.join(self.zones[i], "energy_uj"))

    @property
    def has_energy_counter(self) -> bool:
        return True

    def read_joules(self) -> float:
        with self._lock:
            for i in range(len(self.zones)):
                now = self._raw(i)
                d = now - self._last[i]
                if d < 0:  # wrapped
                    d += self._max[i]
                self._acc += d
                self._last[i] = now
            return self._acc * 1e-6

    def read_watts(self) -> float:
        t, e = time.perf_counter(), self.read_joules()
        if self._wprev is None:
            time.sleep(self.prime_s)
            self._wprev = (t, e)
            t, e = time.perf_counter(), self.read_joules()
        t0, e0 = self._wprev
        self._wprev = (t, e)
        return (e - e0) / max(t - t0, 1e-9)


# ----------------------------------------------------------------------------- meter CSV

_TIME_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}
_POWER_SCALE = {"W": 1.0, "mW": 1e-3, "uW": 1e-6, "kW": 1e3}
_VOLT_SCALE = {"V": 1.0, "mV": 1e-3}
_AMP_SCALE = {"A": 1.0, "mA": 1e-3, "uA": 1e-6}


def _parse_time(text: str, unit: str) -> float:
    """Seconds (epoch seconds for ISO dates); raises ValueError."""
    if unit == "iso":
        s = text.strip().replace("Z", "+00:00")
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            dt = dt.astimezone()  # naive = local time, as the meter's logger wrote it
        return dt.timestamp()
    return float(text) * _TIME_SCALE[unit]


def _unit(table: dict, unit: str, what: str) -> float:
    if unit not in table:
        raise PowerError(f"unknown {what} unit {unit!r}; one of {sorted(table)}")
    return table[unit]


def load_meter_csv(path: str, time_col: str = "time", watts_col: Optional[str] = "watts",
                   time_unit: str = "s", power_unit: str = "W",
                   volts_col: Optional[str] = None, amps_col: Optional[str] = None,
                   volt_unit: str = "V", amp_unit: str = "A", delimiter: Optional[str] = None,
                   name: Optional[str] = None) -> "Trace":
    """A :class:`Trace` from an external power meter's CSV export (header row required).

    ``time_col`` holds seconds (``time_unit`` s/ms/us/ns/min/h, any origin) or ISO-8601 dates
    (``time_unit="iso"``; naive dates are local time). Power comes from ``watts_col`` in
    ``power_unit`` (W/mW/uW/kW), or, with ``watts_col=None``, from ``volts_col`` x ``amps_col``.
    Column names match case-insensitively with surrounding spaces ignored. Blank lines are
    skipped; anything else unparsable raises PowerError naming the file and line.
    """
    if time_unit != "iso":
        tscale = _unit(_TIME_SCALE, time_unit, "time")
    pscale = _unit(_POWER_SCALE, power_unit, "power")
    try:
        f = open(path, "r", newline="", encoding="utf-8-sig")
    except OSError as e:
        raise PowerError(f"cannot read meter CSV {path}: {e.strerror or e}") from e
    with f:
        text = f.read()
    if delimiter is None:
        first = text.splitlines()[0] if text else ""
        delimiter = ";" if first.count(";") > first.count(",") else ("\t" if "\t" in first else ",")
    rows = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = next(rows)
    except StopIteration:
        raise PowerError(f"{path}: empty file, expected a header row") from None
    keys = [h.strip().lower() for h in header]

    def col(c):
        if c.strip().lower() not in keys:
            raise PowerError(f"{path}: line 1: no column {c!r}; columns are {[h.strip() for h in header]}")
        return keys.index(c.strip().lower())

    it = col(time_col)
    if watts_col is not None:
        ip = col(watts_col)
    elif volts_col and amps_col:
        iv, ia = col(volts_col), col(amps_col)
        vs, as_ = _unit(_VOLT_SCALE, volt_unit, "voltage"), _unit(_AMP_SCALE, amp_unit, "current")
    else:
        raise PowerError("load_meter_csv needs watts_col, or volts_col and amps_col")
    ts, ws = [], []
    for lineno, row in enumerate(rows, 2):
        if not row or all(not c.strip() for c in row):
            continue
        try:
            tv = _parse_time(row[it], "iso") if time_unit == "iso" else float(row[it]) * tscale
            if watts_col is not None:
                wv = float(row[ip]) * pscale
            else:
                wv = float(row[iv]) * vs * float(row[ia]) * as_
        except (ValueError, IndexError):
            raise PowerError(f"{path}: line {lineno}: cannot parse {delimiter.join(row)!r} "
                             f"(time column {time_col!r}, "
                             f"{'power column ' + repr(watts_col) if watts_col else 'V/A columns'})") from None
        if not (math.isfinite(tv) and math.isfinite(wv)):
            raise PowerError(f"{path}: line {lineno}: non-finite value in {delimiter.join(row)!r}")
        if ts and tv < ts[-1]:
            raise PowerError(f"{path}: line {lineno}: time goes backwards ({tv} after {ts[-1]})")
        ts.append(tv)
        ws.append(wv)
    if len(ts) < 2:
        raise PowerError(f"{path}: {len(ts)} sample(s); need at least 2")
    return Trace(t=np.array(ts), watts=np.array(ws), sensor=name or f"csv:{os.path.basename(path)}")


class CsvMeterSensor(PowerSensor):
    """The latest reading of a CSV an external meter's logger keeps appending to (PYNQ-Z2:
    a USB power meter logged on the host, the file shared with the board). Same column
    options as :func:`load_meter_csv`; only the last complete line is parsed per read."""

    def __init__(self, path: str, time_col: str = "time", watts_col: str = "watts",
                 power_unit: str = "W", delimiter: str = ","):
        self.path, self.delimiter = path, delimiter
        self.pscale = _unit(_POWER_SCALE, power_unit, "power")
        try:
            with open(path, "r", encoding="utf-8-sig") as f:
                header = f.readline()
        except OSError as e:
            raise PowerError(f"cannot read meter CSV {path}: {e.strerror or e}") from e
        keys = [h.strip().lower() for h in header.strip().split(delimiter)]
        if watts_col.strip().lower() not in keys:
            raise PowerError(f"{path}: line 1: no column {watts_col!r}; columns are {keys}")
        self._ip = keys.index(watts_col.strip().lower())
        self.name = f"csv:{os.path.basename(path)}"
        self.description = f"external meter CSV {path}, column {watts_col!r} in {power_unit}"

    def read_watts(self) -> float:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 4096))
                tail = f.read().decode("utf-8", "replace")
        except OSError as e:
            raise PowerError(f"cannot read meter CSV {self.path}: {e.strerror or e}") from e
        lines = [ln for ln in tail.splitlines() if ln.strip()]
        if tail and not tail.endswith("\n") and lines:
            lines = lines[:-1]  # last line still being written
        if len(lines) < 2 and size <= 4096:
            raise PowerError(f"{self.path}: no data row yet")
        try:
            return float(lines[-1].split(self.delimiter)[self._ip]) * self.pscale
        except (ValueError, IndexError):
            raise PowerError(f"{self.path}: last line is not a reading: {lines[-1]!r}") from None


# --------------------------------------------------------------------------- auto-detect

def probe_sensors(hwmon_root: str = "/sys/class/hwmon", powercap_root: str = "/sys/class/powercap",
                  gpu_index: int = 0, try_pynq: bool = True, try_nvml: bool = True, board: Optional[str] = None
                  ) -> List[Tuple[str, Optional[PowerSensor], str]]:
    """Try each sensor kind in :func:`auto_sensor`'s order. Returns ``(kind, sensor or None,
    why)`` for each; stops after the first that works.

    ``board`` (default: the detected board, mmfree.boards) puts that board's own sensor first
    (boards.json power_sensor): KV260/KR260 the INA260 ``ina260_u14`` through hwmon (pynq.get_rails()
    on Kria would sum unlabelled libsensors features), ZCU104 the ``12V`` rail by name; PYNQ-Z2 has
    none, which the first entry says (then the generic order: pynq rails, hwmon, NVML, RAPL)."""
    import importlib.util

    if board is None:
        try:
            from . import boards
            board = boards.detect_board()
        except Exception:
            board = None
    tries: List[Tuple[str, Callable[[], PowerSensor]]] = []
    out: List[Tuple[str, Optional[PowerSensor], str]] = []
    own = {}
    if board:
        from . import boards
        own = boards.get(board).get("power_sensor", {})
        if own.get("kind") == "hwmon":
            tries.append((f"{board}:hwmon", lambda: HwmonSensor(names=(own["device"],), root=hwmon_root)))
        elif own.get("kind") == "pynq-rails" and try_pynq:
            def board_rails():
                if importlib.util.find_spec("pynq") is None:
                    raise PowerError("pynq is not installed")
                return PynqRailSensor(rails=own["rails"])
            tries.append((f"{board}:rails", board_rails))
        elif own.get("kind") == "none":
            out.append((f"{board}:none", None, f"{boards.normalize(board)} has {own['measures']}"))
    if try_pynq:
        def pynq_rails():
            if importlib.util.find_spec("pynq") is None:
                raise PowerError("pynq is not installed")
            return PynqRailSensor()
        tries.append(("pynq-rails", pynq_rails))
    tries.append(("hwmon", lambda: HwmonSensor(root=hwmon_root)))
    if try_nvml:
        tries.append(("nvml", lambda: NvmlSensor(gpu_index)))
    tries.append(("rapl", lambda: RaplSensor(root=powercap_root)))
    for kind, make in tries:
        try:
            s = make()
        except Exception as e:  # each probe explains itself; nothing here is fatal
            out.append((kind, None, str(e)))
            continue
        out.append((kind, s, s.description + (f"; measures {s.measures}" if s.measures else "")))
        break
    return out


def auto_sensor(verbose: bool = False, **kwargs) -> Optional[PowerSensor]:
    """The first sensor that works on this machine: pynq board rails, hwmon INA2xx (KV260),
    NVML (GPU host), RAPL; None if none does. ``verbose`` prints what was tried and chosen;
    the chosen sensor's ``name``/``description`` say which. kwargs go to :func:`probe_sensors`."""
    tried = probe_sensors(**kwargs)
    if verbose:
        for kind, s, why in tried:
            print(f"power: {kind:10s} {'USING' if s else 'no   '} {why}")
    for _, s, _ in tried:
        if s is not None:
            return s
    return None


# =============================================================================================
# Trace, recorder
# =============================================================================================

@dataclass
class Trace:
    """Power samples: ``t`` seconds (epoch for live recordings), ``watts``; optional energy
    counter ``joules`` (NaN where not read); ``marks`` = [(t, label)]."""

    t: np.ndarray
    watts: np.ndarray
    marks: List[Tuple[float, str]] = field(default_factory=list)
    joules: Optional[np.ndarray] = None
    sensor: str = ""

    def mark_time(self, label: str) -> float:
        for t, lab in self.marks:
            if lab == label:
                return t
        raise PowerError(f"trace has no mark {label!r}; marks: {[m[1] for m in self.marks]}")

    def __len__(self) -> int:
        return len(self.t)


class Recorder:
    """Samples ``sensor`` every ``interval_s`` seconds in a background thread.

    ``mark(label)`` records the time and also takes a sample (and the energy counter) right
    then, so each marked window starts and ends on a sample. Use as a context manager or
    ``start()``/``stop()``; ``trace()`` returns the samples so far. A sensor error in the
    thread stops sampling and is raised again by ``stop()``/``trace()``.
    """

    def __init__(self, sensor: PowerSensor, interval_s: float = 0.1):
        if sensor is None:
            raise PowerError("no power sensor (auto_sensor() found none on this machine)")
        if not interval_s > 0:
            raise PowerError(f"interval_s must be > 0, got {interval_s}")
        self.sensor, self.interval_s = sensor, float(interval_s)
        self._t: List[float] = []
        self._w: List[float] = []
        self._j: List[float] = []
        self._marks: List[Tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._counter = bool(getattr(sensor, "has_energy_counter", False))

    def _sample(self) -> float:
        with self._lock:
            t = time.time()
            w = float(self.sensor.read_watts())
            j = self.sensor.read_joules() if self._counter else None
            self._t.append(t)
            self._w.append(w)
            self._j.append(float("nan") if j is None else float(j))
            return t

    def _run(self):
        nxt = time.perf_counter()
        while not self._stop.is_set():
            try:
                self._sample()
            except BaseException as e:  # surfaced by stop()/trace()
                self._error = e
                return
            nxt += self.interval_s
            delay = nxt - time.perf_counter()
            if delay < 0:  # fell behind (slow sensor): resynchronise, no burst
                nxt, delay = time.perf_counter(), 0.0
            self._stop.wait(delay)

    def start(self) -> "Recorder":
        if self._thread is not None:
            raise PowerError("recorder already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mmfree-power", daemon=True)
        self._thread.start()
        return self

    def mark(self, label: str) -> float:
        """Sample now and remember the time under ``label``; returns that time."""
        self._raise()
        t = self._sample()
        self._marks.append((t, label))
        return t

    def stop(self) -> Trace:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return self.trace()

    def _raise(self):
        if self._error is not None:
            e = self._error
            raise PowerError(f"power sensor {self.sensor.name} failed while recording: {e}") from e

    def trace(self) -> Trace:
        self._raise()
        with self._lock:
            order = np.argsort(np.array(self._t), kind="stable")
            j = np.array(self._j)[order] if self._counter else None
            return Trace(t=np.array(self._t)[order], watts=np.array(self._w)[order],
                         marks=list(self._marks), joules=j, sensor=self.sensor.name)

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return False


# =============================================================================================
# Energy
# =============================================================================================

def integrate(t: np.ndarray, w: np.ndarray, t0: float, t1: float, min_samples: int = 2) -> Tuple[float, int]:
    """Trapezoid integral of the piecewise-linear power over ``[t0, t1]`` (joules), with
    the end points interpolated; returns (joules, samples inside the window). Raises when
    the window is outside the samples or holds fewer than ``min_samples`` samples."""
    t = np.asarray(t, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if not t1 > t0:
        raise PowerError(f"empty window [{t0}, {t1}]")
    if len(t) < 2 or t0 < t[0] - 1e-9 or t1 > t[-1] + 1e-9:
        rng = f"[{t[0]:.3f}, {t[-1]:.3f}]" if len(t) else "(none)"
        raise PowerError(f"too few samples: window [{t0:.3f}, {t1:.3f}] is not covered by the "
                         f"samples {rng}")
    inside = (t >= t0 - 1e-9) & (t <= t1 + 1e-9)
    n = int(inside.sum())
    if n < min_samples:
        raise PowerError(f"too few samples: {n} in a {t1 - t0:.3f} s window (need {min_samples}); "
                         f"run longer or sample faster")
    tt = np.concatenate([[t0], t[(t > t0) & (t < t1)], [t1]])
    ww = np.interp(tt, t, w)
    return float(np.sum((ww[1:] + ww[:-1]) * np.diff(tt)) / 2.0), n


def _counter_delta(trace: Trace, t0: float, t1: float) -> Optional[float]:
    if trace.joules is None:
        return None
    j = np.asarray(trace.joules, dtype=np.float64)
    ok = np.isfinite(j)
    if ok.sum() < 2:
        return None
    t, j = trace.t[ok], j[ok]
    if t0 < t[0] - 1e-9 or t1 > t[-1] + 1e-9:
        return None
    return float(np.interp(t1, t, j) - np.interp(t0, t, j))


@dataclass
class EnergyResult:
    """One measured run. Energies in joules, powers in watts, times in seconds.

    ``joules_gross``: energy over the run (the energy counter's difference when the sensor
    has one, ``energy_source="counter"``, else the trapezoid integral). ``joules_net`` =
    gross - ``idle_watts`` x ``duration_s`` (can be slightly negative for a run that draws no
    more than idle). ``joules_per_token`` is net; ``joules_per_token_gross`` gross.
    """

    sensor: str
    duration_s: float
    joules_gross: float
    joules_net: float
    avg_watts: float
    idle_watts: float
    idle_s: float
    samples: int
    energy_source: str
    joules_trapezoid: float
    tokens: Optional[int] = None
    joules_per_token: Optional[float] = None
    joules_per_token_gross: Optional[float] = None
    tokens_per_s: Optional[float] = None
    run: Tuple[float, float] = (0.0, 0.0)
    idle: Optional[Tuple[float, float]] = None
    trace: Optional[Trace] = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "trace"}
        d["run"], d["idle"] = list(self.run), (list(self.idle) if self.idle else None)
        return d

    def summary(self) -> str:
        s = (f"{self.sensor}: {self.duration_s:.3f} s, avg {self.avg_watts:.3f} W, idle "
             f"{self.idle_watts:.3f} W, {self.joules_gross:.3f} J gross / {self.joules_net:.3f} J net "
             f"({self.energy_source}, {self.samples} samples)")
        if self.tokens:
            s += (f", {self.tokens} tokens: {self.tokens_per_s:.2f} tok/s, "
                  f"{self.joules_per_token:.4g} J/token net ({self.joules_per_token_gross:.4g} gross)")
        return s


def energy_from_trace(trace: Trace, run: Tuple[float, float],
                      idle: Optional[Tuple[float, float]] = None, idle_watts: Optional[float] = None,
                      tokens: Optional[int] = None, min_samples: int = 2,
                      use_counter: bool = True) -> EnergyResult:
    """Energy of the window ``run`` = (t_start, t_end) in ``trace``, net of idle.

    Idle power: ``idle_watts`` if given, else the time-average over the window ``idle``
    (counter difference / time when the trace has an energy counter), else 0 (no
    subtraction). Works for live recordings and for :func:`load_meter_csv` traces alike.
    """
    t0, t1 = float(run[0]), float(run[1])
    trap, n = integrate(trace.t, trace.watts, t0, t1, min_samples)
    cnt = _counter_delta(trace, t0, t1) if use_counter else None
    gross = cnt if cnt is not None else trap
    idle_s = 0.0
    if idle_watts is None:
        if idle is not None:
            i0, i1 = float(idle[0]), float(idle[1])
            idle_s = i1 - i0
            ic = _counter_delta(trace, i0, i1) if (use_counter and cnt is not None) else None
            if ic is not None:
                integrate(trace.t, trace.watts, i0, i1, min_samples)  # same sample checks
                idle_watts = ic / idle_s
            else:
                idle_watts = integrate(trace.t, trace.watts, i0, i1, min_samples)[0] / idle_s
        else:
            idle_watts = 0.0
    dur = t1 - t0
    net = gross - idle_watts * dur
    res = EnergyResult(sensor=trace.sensor, duration_s=dur, joules_gross=gross, joules_net=net,
                       avg_watts=gross / dur, idle_watts=float(idle_watts), idle_s=idle_s, samples=n,
                       energy_source="counter" if cnt is not None else "trapezoid",
                       joules_trapezoid=trap, run=(t0, t1),
                       idle=(float(idle[0]), float(idle[1])) if idle is not None else None, trace=trace)
    if tokens is not None:
        tokens = int(tokens)
        if tokens <= 0:
            raise PowerError(f"tokens must be positive, got {tokens}")
        res.tokens = tokens
        res.joules_per_token = net / tokens
        res.joules_per_token_gross = gross / tokens
        res.tokens_per_s = tokens / dur
    return res


def measure_idle(sensor: PowerSensor, seconds: float = 5.0, interval_s: float = 0.1) -> EnergyResult:
    """Record ``seconds`` of idle; returns the window as an EnergyResult (``avg_watts`` is
    the idle power to pass as ``idle_watts=`` to later measurements)."""
    rec = Recorder(sensor, interval_s).start()
    try:
        a = rec.mark("idle_start")
        time.sleep(seconds)
        b = rec.mark("idle_end")
    finally:
        tr = rec.stop()
    return energy_from_trace(tr, run=(a, b), idle_watts=0.0)


class PowerMeter:
    """Context manager: on entry records ``idle_s`` seconds of idle (unless ``idle_watts`` is
    given), then marks ``run_start``; on exit marks ``run_end``, records ``tail_s`` more and
    computes :attr:`result`. Set ``pm.tokens`` inside the block for J/token."""

    def __init__(self, sensor: Optional[PowerSensor], idle_s: float = 5.0, interval_s: float = 0.1,
                 tokens: Optional[int] = None, idle_watts: Optional[float] = None,
                 tail_s: float = 0.0, min_samples: int = 2):
        if sensor is None:
            raise PowerError("no power sensor (auto_sensor() found none on this machine)")
        self.sensor, self.idle_s, self.interval_s = sensor, float(idle_s), interval_s
        self.tokens, self.idle_watts, self.tail_s, self.min_samples = tokens, idle_watts, tail_s, min_samples
        self.result: Optional[EnergyResult] = None
        self._rec: Optional[Recorder] = None

    def __enter__(self) -> "PowerMeter":
        self._rec = Recorder(self.sensor, self.interval_s).start()
        if self.idle_watts is None and self.idle_s > 0:
            self._rec.mark("idle_start")
            time.sleep(self.idle_s)
            self._rec.mark("idle_end")
        self._rec.mark("run_start")
        return self

    def __exit__(self, exc_type, exc, tb):
        rec = self._rec
        try:
            rec.mark("run_end")
            if self.tail_s > 0:
                time.sleep(self.tail_s)
                rec.mark("tail_end")
        finally:
            trace = rec.stop()
        if exc_type is not None:
            return False
        marks = dict((lab, t) for t, lab in trace.marks)
        idle = (marks["idle_start"], marks["idle_end"]) if "idle_start" in marks else None
        iw = self.idle_watts if self.idle_watts is not None else (None if idle else 0.0)
        self.result = energy_from_trace(trace, run=(marks["run_start"], marks["run_end"]), idle=idle,
                                        idle_watts=iw, tokens=self.tokens, min_samples=self.min_samples)
        return False


def measure_energy(fn: Callable[[], object], sensor: Optional[PowerSensor] = None, idle_s: float = 5.0,
                   interval_s: float = 0.1, tokens: Optional[int] = None,
                   idle_watts: Optional[float] = None, tail_s: float = 0.0,
                   min_samples: int = 2) -> EnergyResult:
    """Measure idle, then run ``fn()`` while recording; returns the EnergyResult.

    ``sensor`` None means :func:`auto_sensor` (PowerError if there is none). When ``tokens``
    is None and ``fn`` returns an int, that int is the token count.
    """
    if sensor is None:
        sensor = auto_sensor()
        if sensor is None:
            raise PowerError("no power sensor found on this machine (no pynq rails, INA hwmon, "
                             "NVML or readable RAPL); pass one, e.g. a CsvMeterSensor")
    pm = PowerMeter(sensor, idle_s=idle_s, interval_s=interval_s, tokens=tokens, idle_watts=idle_watts,
                    tail_s=tail_s, min_samples=min_samples)
    with pm:
        out = fn()
        if tokens is None and isinstance(out, (int, np.integer)) and not isinstance(out, bool):
            pm.tokens = int(out)
    return pm.result


# =============================================================================================
# Plot
# =============================================================================================

def plot_trace(result, path: str, title: Optional[str] = None) -> str:
    """PNG of the power trace with the idle window, the run window, the idle level and the
    marks; ``result`` is an EnergyResult (with its trace) or a Trace. Returns ``path``.
    matplotlib is imported here (Agg canvas, no global backend change)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PowerError(f"plot_trace needs matplotlib: {e}") from e
    res = result if isinstance(result, EnergyResult) else None
    trace = res.trace if res is not None else result
    if trace is None or len(trace) == 0:
        raise PowerError("nothing to plot: the result carries no trace")
    t0 = float(trace.t[0])
    fig = Figure(figsize=(8, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(trace.t - t0, trace.watts, lw=1.0, marker=".", ms=3, color="C0", label=trace.sensor or "power")
    if res is not None:
        if res.idle:
            ax.axvspan(res.idle[0] - t0, res.idle[1] - t0, color="0.85", label="idle window")
        ax.axvspan(res.run[0] - t0, res.run[1] - t0, color="C1", alpha=0.2,
                   label=f"run {res.duration_s:.2f} s, {res.joules_net:.3g} J net")
        ax.axhline(res.idle_watts, color="0.4", ls="--", lw=0.8, label=f"idle {res.idle_watts:.3g} W")
    for tm, lab in trace.marks:
        ax.axvline(tm - t0, color="0.5", lw=0.5)
        ax.annotate(lab, (tm - t0, 1.0), xycoords=("data", "axes fraction"), fontsize=6,
                    rotation=90, va="top", ha="right", color="0.3")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("power (W)")
    if title is None and res is not None:
        title = res.summary()
    if title:
        import textwrap
        ax.set_title(textwrap.fill(title, 120), fontsize=7)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    from .fileio import atomic_path
    with atomic_path(path) as tmp:  # a temporary file, then a rename: never a half-written plot
        fig.savefig(tmp, format="png")
    return path


def _main(argv=None) -> int:
    """``python -m mmfree.power [--seconds S]``: say which sensor is here and read it."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mmfree.power", description=_main.__doc__)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--interval", type=float, default=0.1)
    a = ap.parse_args(argv)
    s = auto_sensor(verbose=True)
    if s is None:
        print("power: no sensor on this machine")
        return 1
    r = measure_idle(s, a.seconds, a.interval)
    print(f"power: {s.name}: {r.avg_watts:.3f} W average over {r.duration_s:.2f} s ({r.samples} samples)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
