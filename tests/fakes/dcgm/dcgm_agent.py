"""Stand-in for DCGM's `dcgm_agent` binding module, for the functions the DCGM source calls.

Same names, parameters, defaults and return types as the real wrappers (handles and group IDs
are `c_void_p`, hierarchy and attributes are the ctypes structs, latest values a ctypes array
of `c_dcgmFieldValue_v2`); failures raise the real `DCGMError` subclasses. The arguments go
through the same ctypes conversions as the real wrappers, so a wrong type fails here too.
"""

from __future__ import annotations

from collections.abc import Callable
from ctypes import CFUNCTYPE, POINTER, c_double, c_int, c_int32, c_int64, c_uint16, c_uint32, c_void_p, py_object
from functools import wraps
from typing import Any, TypeVar

import dcgm_structs
import fake_hostengine

T = TypeVar("T", bound=Callable[..., Any])


def _engine_call(fn: T) -> T:
    """Check that the library is loaded, and turn engine statuses into DCGMError as the real wrappers do."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dcgm_structs._require_library()
        try:
            return fn(*args, **kwargs)
        except fake_hostengine.EngineError as exc:
            dcgm_structs._dcgmCheckReturn(exc.status)
            raise

    return wrapper  # type: ignore[return-value]


# The callback types of dcgmGetValuesSince (per GPU) and dcgmGetValuesSince_v2 (per entity), as in the real module.
dcgmFieldValueEnumeration_f = CFUNCTYPE(c_int32, c_uint32, POINTER(dcgm_structs.c_dcgmFieldValue_v1), c_int32, c_void_p)
dcgmFieldValueEntityEnumeration_f = CFUNCTYPE(
    c_int32, c_uint32, c_uint32, POINTER(dcgm_structs.c_dcgmFieldValue_v1), c_int32, c_void_p
)


def _id(value: Any) -> int:
    """A handle or group ID as the engine knows it (the real library receives the pointer value)."""
    return int(value.value if isinstance(value, c_void_p) else value)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@_engine_call
def dcgmInit() -> int:
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmShutdown() -> int:
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmStartEmbedded(opMode: int) -> c_void_p:
    if opMode not in (dcgm_structs.DCGM_OPERATION_MODE_AUTO, dcgm_structs.DCGM_OPERATION_MODE_MANUAL):
        raise fake_hostengine.EngineError(dcgm_structs.DCGM_ST_BADPARAM)
    return c_void_p(fake_hostengine.current().start_embedded())


@_engine_call
def dcgmStopEmbedded(dcgm_handle: Any) -> int:
    fake_hostengine.current().disconnect(_id(dcgm_handle))
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmConnect_v2(
    ip_address: str | bytes, connectParams: Any, version: int = dcgm_structs.c_dcgmConnectV2Params_version
) -> c_void_p:
    connectParams.version = version
    if (
        not isinstance(connectParams, dcgm_structs.c_dcgmConnectV2Params_v2)
        and version == dcgm_structs.c_dcgmConnectV2Params_version2
    ):
        raise fake_hostengine.EngineError(dcgm_structs.DCGM_ST_VER_MISMATCH)
    return c_void_p(fake_hostengine.current().connect(_text(ip_address)))


@_engine_call
def dcgmDisconnect(dcgm_handle: Any) -> int:
    fake_hostengine.current().disconnect(_id(dcgm_handle))
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmGetAllSupportedDevices(dcgm_handle: Any) -> list[int]:
    return fake_hostengine.current().supported_gpus(_id(dcgm_handle))


@_engine_call
def dcgmGetAllDevices(dcgm_handle: Any) -> list[int]:
    return fake_hostengine.current().all_gpus(_id(dcgm_handle))


@_engine_call
def dcgmGetDeviceAttributes(
    dcgm_handle: Any, gpuId: int, version: int = dcgm_structs.dcgmDeviceAttributes_version3
) -> Any:
    if version != dcgm_structs.dcgmDeviceAttributes_version3:
        raise fake_hostengine.EngineError(dcgm_structs.DCGM_ST_VER_MISMATCH)
    attrs = dcgm_structs.c_dcgmDeviceAttributes_v3()
    attrs.version = dcgm_structs.dcgmDeviceAttributes_version3
    fake_hostengine.current().fill_attributes(_id(dcgm_handle), c_int(gpuId).value, attrs)
    return attrs


@_engine_call
def dcgmGetGpuInstanceHierarchy(dcgm_handle: Any) -> Any:
    hierarchy = dcgm_structs.c_dcgmMigHierarchy_v2()
    hierarchy.version = dcgm_structs.c_dcgmMigHierarchy_version2
    fake_hostengine.current().fill_hierarchy(_id(dcgm_handle), hierarchy)
    return hierarchy


@_engine_call
def dcgmGroupCreate(dcgm_handle: Any, type: int, groupName: str | bytes) -> c_void_p:
    return c_void_p(fake_hostengine.current().group_create(_id(dcgm_handle), type, _text(groupName)))


@_engine_call
def dcgmGroupDestroy(dcgm_handle: Any, group_id: Any) -> int:
    fake_hostengine.current().group_destroy(_id(dcgm_handle), _id(group_id))
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmGroupAddEntity(dcgm_handle: Any, group_id: Any, entityGroupId: int, entityId: int) -> int:
    fake_hostengine.current().group_add_entity(_id(dcgm_handle), _id(group_id), int(entityGroupId), int(entityId))
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmFieldGroupCreate(dcgm_handle: Any, fieldIds: list[int], fieldGroupName: str | bytes) -> c_void_p:
    c_field_ids = (c_uint16 * len(fieldIds))(*fieldIds)
    return c_void_p(
        fake_hostengine.current().field_group_create(_id(dcgm_handle), tuple(c_field_ids), _text(fieldGroupName))
    )


@_engine_call
def dcgmFieldGroupDestroy(dcgm_handle: Any, fieldGroupId: Any) -> int:
    fake_hostengine.current().field_group_destroy(_id(dcgm_handle), _id(fieldGroupId))
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmWatchFields(
    dcgm_handle: Any, groupId: Any, fieldGroupId: Any, updateFreq: int, maxKeepAge: float, maxKeepSamples: int
) -> int:
    freq, age, samples = c_int64(updateFreq).value, c_double(maxKeepAge).value, c_int32(maxKeepSamples).value
    fake_hostengine.current().watch(_id(dcgm_handle), _id(groupId), _id(fieldGroupId), freq, age, samples)
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmUnwatchFields(dcgm_handle: Any, groupId: Any, fieldGroupId: Any) -> int:
    fake_hostengine.current().unwatch(_id(dcgm_handle), _id(groupId), _id(fieldGroupId))
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmUpdateAllFields(dcgm_handle: Any, waitForUpdate: int) -> int:
    fake_hostengine.current().update_all(_id(dcgm_handle), c_int(waitForUpdate).value)
    return dcgm_structs.DCGM_ST_OK


@_engine_call
def dcgmEntitiesGetLatestValues(dcgmHandle: Any, entities: list[Any], fieldIds: list[int], flags: int) -> Any:
    pairs = (dcgm_structs.c_dcgmGroupEntityPair_t * len(entities))(*entities)
    field_ids = (c_uint16 * len(fieldIds))(*fieldIds)
    if not len(pairs) or not len(field_ids):
        raise fake_hostengine.EngineError(dcgm_structs.DCGM_ST_BADPARAM)
    rows = fake_hostengine.current().latest(
        _id(dcgmHandle), [(p.entityGroupId, p.entityId) for p in pairs], list(field_ids), int(flags)
    )
    values = (dcgm_structs.c_dcgmFieldValue_v2 * len(rows))()
    for fv, (group, entity_id, fid, kind, status, value, ts) in zip(values, rows, strict=True):
        fv.version = dcgm_structs.dcgmFieldValue_version2
        fv.entityGroupId, fv.entityId, fv.fieldId = group, entity_id, fid
        fv.ts = ts
        fv.fieldType = ord(kind)
        fv.status = status
        if kind == "d":
            fv.value.dbl = float(value)
        elif kind == "i":
            fv.value.i64 = int(value)
        else:
            fv.value.str = str(value)
    return values


@_engine_call
def dcgmGetValuesSince_v2(
    dcgm_handle: Any, groupId: Any, fieldGroupId: Any, sinceTimestamp: int, enumCB: Any, userData: Any
) -> int:
    engine = fake_hostengine.current()
    rows = engine.values_since(_id(dcgm_handle), _id(groupId), _id(fieldGroupId), c_int64(sinceTimestamp).value)
    user = py_object(userData)  # the C library hands the callback the pointer it was given
    latest = c_int64(sinceTimestamp).value
    for group, entity_id, values in rows:
        array = (dcgm_structs.c_dcgmFieldValue_v1 * len(values))()
        for fv, (ts, xid) in zip(array, values, strict=True):
            fv.version = dcgm_structs.dcgmFieldValue_version1
            fv.fieldId, fv.fieldType, fv.status, fv.ts = fake_hostengine.FI_XID, ord("i"), dcgm_structs.DCGM_ST_OK, ts
            fv.value.i64 = xid
            latest = max(latest, ts + 1)
        enumCB(group, entity_id, array, len(values), c_void_p.from_buffer(user))
    return latest


@_engine_call
def dcgmModuleGetStatuses(dcgmHandle: Any) -> Any:
    statuses = dcgm_structs.c_dcgmModuleGetStatuses_v1()
    statuses.version = dcgm_structs.dcgmModuleGetStatuses_version1
    modules = fake_hostengine.current().module_statuses(_id(dcgmHandle))
    statuses.numStatuses = len(modules)
    for entry, (module_id, status) in zip(statuses.statuses, modules, strict=False):
        entry.id, entry.status = module_id, status
    return statuses


@_engine_call
def dcgmVersionInfo() -> Any:
    info = dcgm_structs.c_dcgmVersionInfo_v2()
    info.version = dcgm_structs.dcgmVersionInfo_version2
    info.rawBuildInfoString = fake_hostengine.current().build_info
    return info
