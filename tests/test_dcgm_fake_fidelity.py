"""The fake DCGM bindings match DCGM 4.6's bindings where the source touches them (signatures, structs, versions)."""

from __future__ import annotations

import inspect

from tests.support.fake_dcgm import fake_bindings

# Transcribed from DCGM 4.6's testing/python3/dcgm_agent.py and dcgm_structs.py.
AGENT_SIGNATURES = {
    "dcgmInit": (),
    "dcgmShutdown": (),
    "dcgmStartEmbedded": ("opMode",),
    "dcgmStopEmbedded": ("dcgm_handle",),
    "dcgmConnect_v2": ("ip_address", "connectParams", "version"),
    "dcgmDisconnect": ("dcgm_handle",),
    "dcgmGetAllSupportedDevices": ("dcgm_handle",),
    "dcgmGetDeviceAttributes": ("dcgm_handle", "gpuId", "version"),
    "dcgmGetGpuInstanceHierarchy": ("dcgm_handle",),
    "dcgmGroupCreate": ("dcgm_handle", "type", "groupName"),
    "dcgmGroupDestroy": ("dcgm_handle", "group_id"),
    "dcgmGroupAddEntity": ("dcgm_handle", "group_id", "entityGroupId", "entityId"),
    "dcgmFieldGroupCreate": ("dcgm_handle", "fieldIds", "fieldGroupName"),
    "dcgmFieldGroupDestroy": ("dcgm_handle", "fieldGroupId"),
    "dcgmWatchFields": ("dcgm_handle", "groupId", "fieldGroupId", "updateFreq", "maxKeepAge", "maxKeepSamples"),
    "dcgmUnwatchFields": ("dcgm_handle", "groupId", "fieldGroupId"),
    "dcgmUpdateAllFields": ("dcgm_handle", "waitForUpdate"),
    "dcgmEntitiesGetLatestValues": ("dcgmHandle", "entities", "fieldIds", "flags"),
    "dcgmGetValuesSince_v2": ("dcgm_handle", "groupId", "fieldGroupId", "sinceTimestamp", "enumCB", "userData"),
}
STRUCT_FIELDS = {
    "c_dcgmGroupEntityPair_t": ("entityGroupId", "entityId"),
    "c_dcgmMigEntityInfo_t": (
        "gpuUuid",
        "nvmlGpuIndex",
        "nvmlInstanceId",
        "nvmlComputeInstanceId",
        "nvmlMigProfileId",
        "nvmlProfileSlices",
    ),
    "c_dcgmMigHierarchyInfo_v2": ("entity", "parent", "info"),
    "c_dcgmMigHierarchy_v2": ("version", "count", "entityList"),
    "c_dcgmConnectV2Params_v2": ("version", "persistAfterDisconnect", "timeoutMs", "addressIsUnixSocket"),
    "c_dcgmFieldValue_v1": ("version", "fieldId", "fieldType", "status", "ts", "value"),
    "c_dcgmFieldValue_v2": (
        "version",
        "entityGroupId",
        "entityId",
        "fieldId",
        "fieldType",
        "status",
        "unused",
        "ts",
        "value",
    ),
    "c_dcgmDeviceSettings_v2": ("version", "persistenceModeEnabled", "migModeEnabled", "confidentialComputeMode"),
    "c_dcgmDeviceMemoryUsage_v1": ("version", "bar1Total", "fbTotal", "fbUsed", "fbFree"),
}
VERSIONS = {
    "c_dcgmMigHierarchy_version2": 0x2011F08,
    "c_dcgmConnectV2Params_version2": 0x2000010,
    "dcgmDeviceAttributes_version3": 0x3001464,
    "dcgmFieldValue_version2": 0x2001020,
}
STATUSES = {
    "DCGM_ST_NOT_SUPPORTED": -6,
    "DCGM_ST_NO_DATA": -14,
    "DCGM_ST_NOT_WATCHED": -16,
    "DCGM_ST_CONNECTION_NOT_VALID": -21,
    "DCGM_ST_LIBRARY_NOT_FOUND": -25,
    "DCGM_ST_REQUIRES_ROOT": -29,
    "DCGM_ST_MODULE_NOT_LOADED": -33,
    "DCGM_ST_PROFILING_NOT_SUPPORTED": -36,
    "DCGM_ST_INSTANCE_NOT_FOUND": -45,
    "DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND": -46,
}


def test_dcgm_fake_agent_signatures_match_the_real_bindings() -> None:
    """Every dcgm_agent function the source calls has the real parameter names and order."""
    agent = fake_bindings().agent
    for name, params in AGENT_SIGNATURES.items():
        assert tuple(inspect.signature(getattr(agent, name)).parameters) == params, name


def test_dcgm_fake_structs_versions_and_statuses_match() -> None:
    """Struct fields, struct version numbers, status codes and error classes are the real ones."""
    structs = fake_bindings().structs
    for name, fields in STRUCT_FIELDS.items():
        assert tuple(f[0] for f in getattr(structs, name)._fields_) == fields, name
    for name, value in VERSIONS.items():
        assert getattr(structs, name) == value, name
    for name, value in STATUSES.items():
        assert getattr(structs, name) == value, name
    error = structs.DCGMError(structs.DCGM_ST_PROFILING_NOT_SUPPORTED)
    assert type(error).__name__ == "DCGMError_ProfilingNotSupported" and error.value == -36
    assert isinstance(error, structs.dcgmExceptionClass(-36))
