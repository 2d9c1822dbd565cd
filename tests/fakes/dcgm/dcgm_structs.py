"""Stand-in for DCGM's `dcgm_structs` binding module: status codes, errors and the ctypes structs the source uses.

Names, numeric values, struct layouts and version numbers follow DCGM 4's bindings. `_dcgmInit`
"loads" the library unless FAKE_DCGM_NO_LIBRARY is set, which reproduces a missing libdcgm.so.4.
Like the real module, the loader names the library file it looks for; DCGM 3's bindings name
libdcgm.so.3 there instead.
"""

from __future__ import annotations

import os
from ctypes import (
    Structure,
    Union,
    c_byte,
    c_char,
    c_double,
    c_int,
    c_int64,
    c_short,
    c_uint,
    c_uint32,
    c_ushort,
    sizeof,
)
from typing import Any, ClassVar

DCGM_MAX_STR_LENGTH = 256
DCGM_MAX_NUM_DEVICES = 32
DCGM_MAX_BLOB_LENGTH = 4096
DCGM_MAX_CLOCKS = 256
DCGM_MAX_NUM_GROUPS = 64
DCGM_GROUP_MAX_ENTITIES_V2 = 1024
DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP = 128
DCGM_MAX_INSTANCES_PER_GPU = 8
DCGM_MAX_TOTAL_INSTANCES = 14
DCGM_MAX_HIERARCHY_INFO = DCGM_MAX_NUM_DEVICES * DCGM_MAX_TOTAL_INSTANCES

DCGM_OPERATION_MODE_AUTO = 1
DCGM_OPERATION_MODE_MANUAL = 2

DCGM_GROUP_DEFAULT = 0
DCGM_GROUP_EMPTY = 1
DCGM_GROUP_DEFAULT_INSTANCES = 3
DCGM_GROUP_DEFAULT_COMPUTE_INSTANCES = 4

DCGM_FV_FLAG_LIVE_DATA = 0x00000001

DCGM_ST_OK = 0
DCGM_ST_BADPARAM = -1
DCGM_ST_GENERIC_ERROR = -3
DCGM_ST_MEMORY = -4
DCGM_ST_NOT_CONFIGURED = -5
DCGM_ST_NOT_SUPPORTED = -6
DCGM_ST_INIT_ERROR = -7
DCGM_ST_NVML_ERROR = -8
DCGM_ST_PENDING = -9
DCGM_ST_UNINITIALIZED = -10
DCGM_ST_TIMEOUT = -11
DCGM_ST_VER_MISMATCH = -12
DCGM_ST_UNKNOWN_FIELD = -13
DCGM_ST_NO_DATA = -14
DCGM_ST_STALE_DATA = -15
DCGM_ST_NOT_WATCHED = -16
DCGM_ST_NO_PERMISSION = -17
DCGM_ST_GPU_IS_LOST = -18
DCGM_ST_RESET_REQUIRED = -19
DCGM_ST_FUNCTION_NOT_FOUND = -20
DCGM_ST_CONNECTION_NOT_VALID = -21
DCGM_ST_GPU_NOT_SUPPORTED = -22
DCGM_ST_GROUP_INCOMPATIBLE = -23
DCGM_ST_MAX_LIMIT = -24
DCGM_ST_LIBRARY_NOT_FOUND = -25
DCGM_ST_DUPLICATE_KEY = -26
DCGM_ST_REQUIRES_ROOT = -29
DCGM_ST_INSUFFICIENT_SIZE = -31
DCGM_ST_FIELD_UNSUPPORTED_BY_API = -32
DCGM_ST_MODULE_NOT_LOADED = -33
DCGM_ST_IN_USE = -34
DCGM_ST_GROUP_IS_EMPTY = -35
DCGM_ST_PROFILING_NOT_SUPPORTED = -36
DCGM_ST_PROFILING_LIBRARY_ERROR = -37
DCGM_ST_PROFILING_MULTI_PASS = -38
DCGM_ST_INSUFFICIENT_DRIVER_VERSION = -44
DCGM_ST_INSTANCE_NOT_FOUND = -45
DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND = -46
DCGM_ST_PAUSED = -54
DCGM_ST_NVML_NOT_LOADED = -56

_MESSAGES = {
    DCGM_ST_BADPARAM: "Bad parameter passed to function",
    DCGM_ST_NOT_SUPPORTED: "Feature not supported",
    DCGM_ST_UNINITIALIZED: "Object is in an undefined state",
    DCGM_ST_NO_DATA: "No data is available",
    DCGM_ST_NOT_WATCHED: "Field is not being updated",
    DCGM_ST_CONNECTION_NOT_VALID: "The connection to the host engine is not valid any longer",
    DCGM_ST_LIBRARY_NOT_FOUND: "DCGM library could not be found",
    DCGM_ST_DUPLICATE_KEY: "Duplicate key passed to function",
    DCGM_ST_MAX_LIMIT: "Max limit reached for the object",
    DCGM_ST_PROFILING_NOT_SUPPORTED: "Profiling is not supported for this group of GPUs or GPU",
    DCGM_ST_INSTANCE_NOT_FOUND: "The specified GPU instance does not exist",
    DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND: "The specified GPU compute instance does not exist",
}


class DCGMError(Exception):
    """DCGM's error: `value` is the DCGM_ST_* code; DCGMError(code) returns the code's own subclass."""

    _valClassMapping: ClassVar[dict[int, type[DCGMError]]] = {}
    value: int
    info: Any

    def __new__(cls, value: int) -> DCGMError:
        if cls is DCGMError:
            cls = DCGMError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        obj.info = None
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"DCGM Error with code {self.value}")


def dcgmExceptionClass(error_code: int) -> type[DCGMError] | None:
    return DCGMError._valClassMapping.get(error_code)


def _make_error_classes() -> None:
    """One subclass per status, named like the real ones (DCGM_ST_NO_DATA -> DCGMError_NoData)."""
    for name, value in list(globals().items()):
        if not name.startswith("DCGM_ST_") or value == DCGM_ST_OK:
            continue
        words = name.removeprefix("DCGM_ST_").split("_")
        cls_name = "DCGMError_" + "".join(w.capitalize() for w in words)

        def new(cls: type[DCGMError], _value: int = value) -> DCGMError:
            return DCGMError.__new__(cls, _value)

        def init(self: DCGMError, _value: int = value) -> None:
            Exception.__init__(self, _value)

        cls = type(cls_name, (DCGMError,), {"__new__": new, "__init__": init})
        globals()[cls_name] = cls
        DCGMError._valClassMapping[value] = cls


_make_error_classes()

_loaded = False


_LIBRARY_FILE = "libdcgm.so.4"  # the real loader tries CDLL on this name in libDcgmPath, LD_LIBRARY_PATH, /usr/lib64


def _LoadDcgmLibrary(libDcgmPath: str | None = None) -> None:
    global _loaded
    if os.environ.get("FAKE_DCGM_NO_LIBRARY"):
        _dcgmCheckReturn(DCGM_ST_LIBRARY_NOT_FOUND)
    _loaded = True


def _dcgmInit(libDcgmPath: str | None = None) -> None:
    _LoadDcgmLibrary(libDcgmPath)


def _dcgmCheckReturn(ret: int) -> int:
    if ret != DCGM_ST_OK:
        raise DCGMError(ret)
    return ret


def _require_library() -> None:
    """What the real bindings' function-pointer lookup does before libdcgm is loaded."""
    if not _loaded:
        raise DCGMError(DCGM_ST_UNINITIALIZED)


class _DcgmStructure(Structure):
    """Like the real bindings: char arrays read back as str, and str assigned as UTF-8 bytes."""

    def __getattribute__(self, key: str) -> Any:
        value = super().__getattribute__(key)
        return value.decode("utf-8") if isinstance(value, bytes) else value

    def __setattr__(self, key: str, value: Any) -> None:
        super().__setattr__(key, value.encode("utf-8") if isinstance(value, str) else value)


class DcgmUnion(Union):
    def __getattribute__(self, key: str) -> Any:
        value = super().__getattribute__(key)
        return value.decode("utf-8") if isinstance(value, bytes) else value

    def __setattr__(self, key: str, value: Any) -> None:
        super().__setattr__(key, value.encode("utf-8") if isinstance(value, str) else value)


_PrintableStructure = _DcgmStructure


def make_dcgm_version(struct: type, ver: int) -> int:
    return sizeof(struct) | (ver << 24)


class c_dcgmConnectV2Params_v1(_PrintableStructure):
    _fields_ = [("version", c_uint), ("persistAfterDisconnect", c_uint)]


c_dcgmConnectV2Params_version1 = make_dcgm_version(c_dcgmConnectV2Params_v1, 1)


class c_dcgmConnectV2Params_v2(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("persistAfterDisconnect", c_uint),
        ("timeoutMs", c_uint),
        ("addressIsUnixSocket", c_uint),
    ]


c_dcgmConnectV2Params_version2 = make_dcgm_version(c_dcgmConnectV2Params_v2, 2)
c_dcgmConnectV2Params_version = c_dcgmConnectV2Params_version2


class c_dcgmGroupEntityPair_t(_PrintableStructure):
    _fields_ = [("entityGroupId", c_uint32), ("entityId", c_uint32)]


class c_dcgmMigEntityInfo_t(_PrintableStructure):
    _fields_ = [
        ("gpuUuid", c_char * 128),
        ("nvmlGpuIndex", c_uint),
        ("nvmlInstanceId", c_uint),
        ("nvmlComputeInstanceId", c_uint),
        ("nvmlMigProfileId", c_uint),
        ("nvmlProfileSlices", c_uint),
    ]


class c_dcgmMigHierarchyInfo_v2(_PrintableStructure):
    _fields_ = [
        ("entity", c_dcgmGroupEntityPair_t),
        ("parent", c_dcgmGroupEntityPair_t),
        ("info", c_dcgmMigEntityInfo_t),
    ]


class c_dcgmMigHierarchy_v2(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("count", c_uint),
        ("entityList", c_dcgmMigHierarchyInfo_v2 * DCGM_MAX_HIERARCHY_INFO),
    ]


c_dcgmMigHierarchy_version2 = make_dcgm_version(c_dcgmMigHierarchy_v2, 2)


class c_dcgmClockSet_v1(_PrintableStructure):
    _fields_ = [("version", c_uint), ("memClock", c_uint), ("smClock", c_uint)]


class c_dcgmDeviceSupportedClockSets_v1(_PrintableStructure):
    _fields_ = [("version", c_uint), ("count", c_uint), ("clockSet", c_dcgmClockSet_v1 * DCGM_MAX_CLOCKS)]


class c_dcgmDeviceThermals_v1(_PrintableStructure):
    _fields_ = [("version", c_uint), ("slowdownTemp", c_uint), ("shutdownTemp", c_uint)]


class c_dcgmDevicePowerLimits_v1(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("curPowerLimit", c_uint),
        ("defaultPowerLimit", c_uint),
        ("enforcedPowerLimit", c_uint),
        ("minPowerLimit", c_uint),
        ("maxPowerLimit", c_uint),
    ]


class c_dcgmDeviceIdentifiers_v1(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("brandName", c_char * DCGM_MAX_STR_LENGTH),
        ("deviceName", c_char * DCGM_MAX_STR_LENGTH),
        ("pciBusId", c_char * DCGM_MAX_STR_LENGTH),
        ("serial", c_char * DCGM_MAX_STR_LENGTH),
        ("uuid", c_char * DCGM_MAX_STR_LENGTH),
        ("vbios", c_char * DCGM_MAX_STR_LENGTH),
        ("inforomImageVersion", c_char * DCGM_MAX_STR_LENGTH),
        ("pciDeviceId", c_uint32),
        ("pciSubSystemId", c_uint32),
        ("driverVersion", c_char * DCGM_MAX_STR_LENGTH),
        ("virtualizationMode", c_uint32),
    ]


class c_dcgmDeviceMemoryUsage_v1(_PrintableStructure):
    _fields_ = [("version", c_uint), ("bar1Total", c_uint), ("fbTotal", c_uint), ("fbUsed", c_uint), ("fbFree", c_uint)]


class c_dcgmDeviceSettings_v2(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("persistenceModeEnabled", c_uint),
        ("migModeEnabled", c_uint),
        ("confidentialComputeMode", c_uint),
    ]


class c_dcgmDeviceAttributes_v3(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("clockSets", c_dcgmDeviceSupportedClockSets_v1),
        ("thermalSettings", c_dcgmDeviceThermals_v1),
        ("powerLimits", c_dcgmDevicePowerLimits_v1),
        ("identifiers", c_dcgmDeviceIdentifiers_v1),
        ("memoryUsage", c_dcgmDeviceMemoryUsage_v1),
        ("settings", c_dcgmDeviceSettings_v2),
    ]


dcgmDeviceAttributes_version3 = make_dcgm_version(c_dcgmDeviceAttributes_v3, 3)


class c_dcgmFieldValue_v1_value(DcgmUnion):
    _fields_ = [
        ("i64", c_int64),
        ("dbl", c_double),
        ("str", c_char * DCGM_MAX_STR_LENGTH),
        ("blob", c_byte * DCGM_MAX_BLOB_LENGTH),
    ]


class c_dcgmFieldValue_v1(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("fieldId", c_ushort),
        ("fieldType", c_short),
        ("status", c_int),
        ("ts", c_int64),
        ("value", c_dcgmFieldValue_v1_value),
    ]


dcgmFieldValue_version1 = make_dcgm_version(c_dcgmFieldValue_v1, 1)


class c_dcgmFieldValue_v2(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("entityGroupId", c_uint),
        ("entityId", c_uint),
        ("fieldId", c_ushort),
        ("fieldType", c_short),
        ("status", c_int),
        ("unused", c_uint),
        ("ts", c_int64),
        ("value", c_dcgmFieldValue_v1_value),
    ]


dcgmFieldValue_version2 = make_dcgm_version(c_dcgmFieldValue_v2, 2)


DcgmModuleIdCore = 0
DcgmModuleIdNvSwitch = 1
DcgmModuleIdVGPU = 2
DcgmModuleIdIntrospect = 3
DcgmModuleIdHealth = 4
DcgmModuleIdPolicy = 5
DcgmModuleIdConfig = 6
DcgmModuleIdDiag = 7
DcgmModuleIdProfiling = 8
DcgmModuleIdSysmon = 9
DcgmModuleIdCount = 10

DcgmModuleStatusNotLoaded = 0
DcgmModuleStatusDenylisted = 1
DcgmModuleStatusFailed = 2
DcgmModuleStatusLoaded = 3
DcgmModuleStatusUnloaded = 4
DcgmModuleStatusPaused = 5

DCGM_MODULE_STATUSES_CAPACITY = 16


class c_dcgmModuleGetStatusesModule_t(_PrintableStructure):
    _fields_ = [("id", c_uint32), ("status", c_uint32)]


class c_dcgmModuleGetStatuses_v1(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("numStatuses", c_uint32),
        ("statuses", c_dcgmModuleGetStatusesModule_t * DCGM_MODULE_STATUSES_CAPACITY),
    ]


dcgmModuleGetStatuses_version1 = make_dcgm_version(c_dcgmModuleGetStatuses_v1, 1)


class c_dcgmVersionInfo_v2(_PrintableStructure):
    _fields_ = [("version", c_uint32), ("rawBuildInfoString", c_char * (DCGM_MAX_STR_LENGTH * 2))]


dcgmVersionInfo_version2 = make_dcgm_version(c_dcgmVersionInfo_v2, 2)
dcgmVersionInfo_version = dcgmVersionInfo_version2
