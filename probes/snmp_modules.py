"""Device profiles ("modules", as snmp_exporter calls them): what to read from an access point.

Credentials are not here (they are auths in the config); a module only says which OIDs to walk
and how to turn them into WiFi figures. `generic` is always read; a vendor module adds its WiFi
tables. `auto` picks the module from sysObjectID, or by probing vendor subtrees when the agent
reports the plain net-snmp sysObjectID (UniFi APs do).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# SNMPv2-MIB system group and the other uptimes.
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SNMP_ENGINE_TIME = "1.3.6.1.6.3.10.2.1.3.0"  # seconds, SNMP-FRAMEWORK-MIB
HR_SYSTEM_UPTIME = "1.3.6.1.2.1.25.1.1.0"  # TimeTicks, HOST-RESOURCES-MIB

# IF-MIB ifTable and ifXTable columns.
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
IF_IN_OCTETS = "1.3.6.1.2.1.2.2.1.10"
IF_IN_ERRORS = "1.3.6.1.2.1.2.2.1.14"
IF_OUT_OCTETS = "1.3.6.1.2.1.2.2.1.16"
IF_OUT_ERRORS = "1.3.6.1.2.1.2.2.1.20"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_HC_IN_OCTETS = "1.3.6.1.2.1.31.1.1.1.6"
IF_HC_OUT_OCTETS = "1.3.6.1.2.1.31.1.1.1.10"

# HOST-RESOURCES-MIB processor and storage; UCD-SNMP-MIB memory (kB).
HR_PROCESSOR_LOAD = "1.3.6.1.2.1.25.3.3.1.2"
HR_STORAGE_TYPE = "1.3.6.1.2.1.25.2.3.1.2"
HR_STORAGE_SIZE = "1.3.6.1.2.1.25.2.3.1.5"
HR_STORAGE_USED = "1.3.6.1.2.1.25.2.3.1.6"
HR_STORAGE_RAM = "1.3.6.1.2.1.25.2.1.2"
UCD_MEM_TOTAL_REAL = "1.3.6.1.4.1.2021.4.5.0"
UCD_MEM_AVAIL_REAL = "1.3.6.1.4.1.2021.4.6.0"
UCD_MEM_BUFFER = "1.3.6.1.4.1.2021.4.14.0"
UCD_MEM_CACHED = "1.3.6.1.4.1.2021.4.15.0"

NET_SNMP_LINUX = "1.3.6.1.4.1.8072.3.2.10"  # what a stock net-snmp agent reports (also UniFi)


@dataclass(frozen=True, slots=True)
class RadioTable:
    """A vendor table with one row per radio (or per SSID/VAP); rows are summed per radio label.

    `label` is a column whose text names the radio, or "ifindex" when the row index is an
    ifIndex (named by ifName), or "index" (the row index as text), or a fixed "=name".
    Values: clients (summed), channel, frequency in MHz, noise in dBm, utilisation in percent.
    """

    label: str = "index"
    clients: str | None = None
    channel: str | None = None
    frequency_mhz: str | None = None
    noise_dbm: str | None = None
    utilisation_pct: str | None = None

    def columns(self) -> list[str]:
        """Every column this table needs walked."""
        cols = [self.clients, self.channel, self.frequency_mhz, self.noise_dbm,
                self.utilisation_pct]
        if self.label not in ("ifindex", "index") and not self.label.startswith("="):
            cols.append(self.label)
        return [c for c in cols if c]


@dataclass(frozen=True, slots=True)
class Module:
    """A device profile: how to recognise it and which WiFi figures it exposes."""

    name: str
    vendor: str
    sys_object_ids: tuple[str, ...] = ()  # prefixes of sysObjectID that select this module
    detect: tuple[str, ...] = ()  # subtrees whose presence selects it (generic sysObjectID)
    radios: tuple[RadioTable, ...] = ()
    clients_scalars: tuple[str, ...] = ()  # one total, radio="all": the first one present
    cpu_pct_scalar: str | None = None
    cpu_pct_column: str | None = None  # averaged over rows
    memory_kb: tuple[str, str, str, str] | None = None  # total, free, buffers, cached scalars
    model_scalar: str | None = None
    model_column: str | None = None  # first non-empty value
    max_repetitions: int | None = None  # overrides the profile's value (agent quirks)
    bulk: bool = True  # False for agents whose GETBULK is broken
    notes: str = ""
    extra_columns: tuple[str, ...] = field(default=())

    def walk_columns(self) -> list[str]:
        """Vendor columns to walk on top of the generic ones."""
        cols: list[str] = []
        for table in self.radios:
            cols.extend(table.columns())
        if self.cpu_pct_column:
            cols.append(self.cpu_pct_column)
        if self.model_column:
            cols.append(self.model_column)
        cols.extend(self.extra_columns)
        return list(dict.fromkeys(cols))

    def scalars(self) -> list[str]:
        """Vendor scalars to GET on top of the generic ones."""
        out = [*self.clients_scalars, self.cpu_pct_scalar, self.model_scalar]
        if self.memory_kb:
            out.extend(self.memory_kb)
        return [o for o in out if o]


GENERIC_COLUMNS = [
    IF_DESCR, IF_OPER_STATUS, IF_IN_OCTETS, IF_IN_ERRORS, IF_OUT_OCTETS, IF_OUT_ERRORS,
    IF_NAME, IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS,
    HR_PROCESSOR_LOAD, HR_STORAGE_TYPE, HR_STORAGE_SIZE, HR_STORAGE_USED,
]
GENERIC_SCALARS = [
    SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME, SNMP_ENGINE_TIME, HR_SYSTEM_UPTIME,
    UCD_MEM_TOTAL_REAL, UCD_MEM_AVAIL_REAL, UCD_MEM_BUFFER, UCD_MEM_CACHED,
]

# IEEE802dot11-MIB dot11CurrentChannel, indexed by ifIndex (Cisco and airOS implement it).
DOT11_CURRENT_CHANNEL = "1.2.840.10036.4.5.1.1"

MODULES: dict[str, Module] = {
    m.name: m
    for m in (
        Module("generic", vendor=""),
        Module(
            "ubiquiti_unifi", vendor="Ubiquiti",
            sys_object_ids=("1.3.6.1.4.1.41112.1.6",),
            detect=("1.3.6.1.4.1.41112.1.6",),
            radios=(
                # UBNT-UniFi-MIB unifiVapTable: one row per SSID and radio; sum per radio.
                RadioTable(label="1.3.6.1.4.1.41112.1.6.1.2.1.9",  # unifiVapRadio ("ng", "na")
                           clients="1.3.6.1.4.1.41112.1.6.1.2.1.8",  # unifiVapNumStations
                           channel="1.3.6.1.4.1.41112.1.6.1.2.1.4"),  # unifiVapChannel
                # unifiRadioTable: channel utilisation per radio.
                RadioTable(label="1.3.6.1.4.1.41112.1.6.1.1.1.3",  # unifiRadioRadio
                           utilisation_pct="1.3.6.1.4.1.41112.1.6.1.1.1.6"),  # unifiRadioCuTotal
            ),
            model_scalar="1.3.6.1.4.1.41112.1.6.3.3.0",  # unifiApSystemModel
        ),
        Module(
            "ubiquiti_airmax", vendor="Ubiquiti",
            sys_object_ids=("1.3.6.1.4.1.41112.1.4",),
            detect=("1.3.6.1.4.1.41112.1.4",),
            radios=(
                RadioTable(label="index",
                           clients="1.3.6.1.4.1.41112.1.4.5.1.15",  # ubntWlStatStaCount
                           noise_dbm="1.3.6.1.4.1.41112.1.4.5.1.8"),  # ubntWlStatNoiseFloor
                RadioTable(label="index",
                           frequency_mhz="1.3.6.1.4.1.41112.1.4.1.1.4"),  # ubntRadioFreq
            ),
            # FROGFOOT-RESOURCES-MIB memory (kB): total, free, buffer, cache.
            memory_kb=("1.3.6.1.4.1.10002.1.1.1.1.1.0", "1.3.6.1.4.1.10002.1.1.1.1.2.0",
                       "1.3.6.1.4.1.10002.1.1.1.1.3.0", "1.3.6.1.4.1.10002.1.1.1.1.4.0"),
            model_column="1.2.840.10036.3.1.2.1.3",  # dot11manufacturerProductName
        ),
        Module(
            "mikrotik", vendor="MikroTik",
            sys_object_ids=("1.3.6.1.4.1.14988.",),
            radios=(
                # MIKROTIK-MIB mtxrWlApTable, indexed by ifIndex.
                RadioTable(label="ifindex",
                           clients="1.3.6.1.4.1.14988.1.1.1.3.1.6",  # mtxrWlApClientCount
                           frequency_mhz="1.3.6.1.4.1.14988.1.1.1.3.1.7",  # mtxrWlApFreq
                           noise_dbm="1.3.6.1.4.1.14988.1.1.1.3.1.9"),  # mtxrWlApNoiseFloor
            ),
            notes="mtxrWlApClientCount is typed Counter32 but is a gauge",
        ),
        Module(
            "tplink_eap", vendor="TP-Link",
            sys_object_ids=("1.3.6.1.4.1.11863.",),
            clients_scalars=("1.3.6.1.4.1.11863.10.1.1.1.0",),  # EAP associated clients
        ),
        Module(
            "cisco", vendor="Cisco",
            sys_object_ids=("1.3.6.1.4.1.9.",),
            radios=(
                # CISCO-DOT11-ASSOCIATION-MIB cDot11ActiveWirelessClients, indexed by ifIndex.
                RadioTable(label="ifindex", clients="1.3.6.1.4.1.9.9.273.1.1.2.1.1",
                           channel=DOT11_CURRENT_CHANNEL),
            ),
            cpu_pct_column="1.3.6.1.4.1.9.9.109.1.1.1.1.8",  # cpmCPUTotal5minRev
        ),
        Module(
            "aruba", vendor="Aruba",
            sys_object_ids=("1.3.6.1.4.1.14823.",),
            radios=(
                # AI-AP-MIB aiRadioTable (Instant): index = AP MAC + radio number.
                RadioTable(label="index", clients="1.3.6.1.4.1.14823.2.3.3.1.2.2.1.21"),
            ),
            # WLSX-SWITCH-MIB wlsxSwitchTotalNumStationsAssociated (ArubaOS controllers).
            clients_scalars=("1.3.6.1.4.1.14823.2.2.1.1.3.2.0",),
        ),
        Module(
            "ruijie", vendor="Ruijie",
            sys_object_ids=("1.3.6.1.4.1.4881.",),
            radios=(
                # RUIJIE-AC-MGMT ruijieApgCfgTable StaNum per managed AP (summed).
                RadioTable(label="=all", clients="1.3.6.1.4.1.4881.1.1.10.2.56.2.1.1.1.34"),
            ),
            cpu_pct_scalar="1.3.6.1.4.1.4881.1.1.10.2.36.1.1.1.0",  # ruijieCPUUtilization5sec
        ),
        Module(
            "ruckus", vendor="Ruckus",
            sys_object_ids=("1.3.6.1.4.1.25053.",),
            clients_scalars=(
                "1.3.6.1.4.1.25053.1.15.1.1.1.15.2.0",  # ruckusUnleashedSystemStatsNumSta
                "1.3.6.1.4.1.25053.1.3.1.1.1.15.2.0",  # ruckusSCGSystemStatsNumSta (SmartZone)
            ),
            cpu_pct_scalar="1.3.6.1.4.1.25053.1.15.1.1.1.15.13.0",  # ...StatsCPUUtil
        ),
        Module(
            "huawei", vendor="Huawei",
            sys_object_ids=("1.3.6.1.4.1.2011.",),
            radios=(
                # HUAWEI-WLAN-AP-RADIO-MIB hwWlanRadioInfoTable: online stations per radio.
                RadioTable(label="index", clients="1.3.6.1.4.1.2011.6.139.16.1.2.1.41"),
            ),
            cpu_pct_column="1.3.6.1.4.1.2011.5.25.31.1.1.1.1.5",  # hwEntityCpuUsage
            notes="radio table OID from the vendor MIB, not checked against a recording",
        ),
    )
}

# Vendor subtrees probed (one GETNEXT each) when sysObjectID is the generic net-snmp one.
DETECT_ORDER = ("ubiquiti_unifi", "ubiquiti_airmax")


def module_for_sys_object_id(sys_object_id: str) -> Module | None:
    """The vendor module whose sysObjectID prefix matches, or None."""
    for module in MODULES.values():
        for prefix in module.sys_object_ids:
            if sys_object_id == prefix.rstrip(".") or sys_object_id.startswith(prefix.rstrip(".") + "."):
                return module
    return None
