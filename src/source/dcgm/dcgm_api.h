/*
 * The subset of NVIDIA's DCGM C API (major version 4, libdcgm.so.4) that
 * mig-exporter uses, written for this project from NVIDIA's public API
 * reference. Only what the exporter calls is declared; struct layouts,
 * constants and return codes are those of DCGM 4.x (unchanged from 4.0 to
 * 4.6), each noted with where it comes from in NVIDIA's public headers
 * (dcgm_structs.h, dcgm_fields.h, dcgm_agent.h).
 *
 * build.rs turns this file into src/source/dcgm/bindings.rs with bindgen
 * (cargo feature `dcgm-bindgen`); the static assertions at the end make
 * clang refuse a layout that differs from DCGM's.
 */
#ifndef MIG_EXPORTER_DCGM_API_H
#define MIG_EXPORTER_DCGM_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Versioned structs (dcgm_structs.h) ------------------------------------
 * A versioned struct's first member is its version word: the struct's size in
 * the low 24 bits and the version number above them. DCGM refuses a call
 * whose version word does not match its own layout (DCGM_ST_VER_MISMATCH).
 */
#define MAKE_DCGM_VERSION(typeName, ver) (unsigned int)(sizeof(typeName) | ((unsigned long)(ver) << 24U))

/* ---- Limits (dcgm_structs.h) ---------------------------------------------- */
#define DCGM_MAX_NUM_DEVICES 32                 /* GPUs per node since DCGM 2.0 */
#define DCGM_MAX_STR_LENGTH 256
#define DCGM_MAX_BLOB_LENGTH 4096
#define DCGM_MAX_INSTANCES_PER_GPU 8
#define DCGM_MAX_TOTAL_INSTANCES_PER_GPU 14     /* GPU instances + compute instances */
#define DCGM_MAX_HIERARCHY_INFO 448             /* DCGM_MAX_NUM_DEVICES * DCGM_MAX_TOTAL_INSTANCES_PER_GPU */
#define DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP 128
#define DCGM_MAX_NUM_FIELD_GROUPS 64
#define DCGM_MAX_NUM_GROUPS 64
#define DCGM_GROUP_MAX_ENTITIES_V2 1024
#define DCGM_MAX_AGE_USEC_DEFAULT 30000000      /* 30 s */
#define DCGM_HE_PORT_NUMBER 5555                /* nv-hostengine's default TCP port */

/* ---- Blank values (dcgm_structs.h) -----------------------------------------
 * A value at or above the type's BLANK base is not a reading: no data yet,
 * not found, not supported, or not permitted.
 */
#define DCGM_INT32_BLANK 0x7ffffff0
#define DCGM_INT64_BLANK 0x7ffffffffffffff0
#define DCGM_FP64_BLANK 140737488355328.0       /* 2^47 */
#define DCGM_STR_BLANK "<<<NULL>>>"
#define DCGM_INT32_NOT_FOUND 0x7ffffff1         /* DCGM_INT32_BLANK + 1 */
#define DCGM_INT64_NOT_FOUND 0x7ffffffffffffff1 /* DCGM_INT64_BLANK + 1 */
#define DCGM_FP64_NOT_FOUND 140737488355329.0   /* DCGM_FP64_BLANK + 1.0 */
#define DCGM_STR_NOT_FOUND "<<<NOT_FOUND>>>"
#define DCGM_INT32_NOT_SUPPORTED 0x7ffffff2
#define DCGM_INT64_NOT_SUPPORTED 0x7ffffffffffffff2
#define DCGM_FP64_NOT_SUPPORTED 140737488355330.0
#define DCGM_STR_NOT_SUPPORTED "<<<NOT_SUPPORTED>>>"
#define DCGM_INT32_NOT_PERMISSIONED 0x7ffffff3
#define DCGM_INT64_NOT_PERMISSIONED 0x7ffffffffffffff3
#define DCGM_FP64_NOT_PERMISSIONED 140737488355331.0
#define DCGM_STR_NOT_PERMISSIONED "<<<NOT_PERM>>>"

/* ---- Return codes (dcgm_structs.h, enum dcgmReturn_enum) ------------------- */
typedef enum dcgmReturn_enum
{
    DCGM_ST_OK                         = 0,
    DCGM_ST_BADPARAM                   = -1,
    DCGM_ST_GENERIC_ERROR              = -3,
    DCGM_ST_MEMORY                     = -4,
    DCGM_ST_NOT_CONFIGURED             = -5,
    DCGM_ST_NOT_SUPPORTED              = -6,
    DCGM_ST_INIT_ERROR                 = -7,
    DCGM_ST_NVML_ERROR                 = -8,
    DCGM_ST_PENDING                    = -9,
    DCGM_ST_UNINITIALIZED              = -10,
    DCGM_ST_TIMEOUT                    = -11,
    DCGM_ST_VER_MISMATCH               = -12,
    DCGM_ST_UNKNOWN_FIELD              = -13,
    DCGM_ST_NO_DATA                    = -14,
    DCGM_ST_STALE_DATA                 = -15,
    DCGM_ST_NOT_WATCHED                = -16,
    DCGM_ST_NO_PERMISSION              = -17,
    DCGM_ST_GPU_IS_LOST                = -18,
    DCGM_ST_RESET_REQUIRED             = -19,
    DCGM_ST_FUNCTION_NOT_FOUND         = -20,
    DCGM_ST_CONNECTION_NOT_VALID       = -21,
    DCGM_ST_GPU_NOT_SUPPORTED          = -22,
    DCGM_ST_MAX_LIMIT                  = -24,
    DCGM_ST_DUPLICATE_KEY              = -26,
    DCGM_ST_REQUIRES_ROOT              = -29,
    DCGM_ST_INSUFFICIENT_SIZE          = -31,
    DCGM_ST_MODULE_NOT_LOADED          = -33,
    DCGM_ST_GROUP_IS_EMPTY             = -35,
    DCGM_ST_PROFILING_NOT_SUPPORTED    = -36,
    DCGM_ST_PROFILING_LIBRARY_ERROR    = -37,
    DCGM_ST_PROFILING_MULTI_PASS       = -38,
    DCGM_ST_INSTANCE_NOT_FOUND         = -45,
    DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND = -46,
    DCGM_ST_NVML_NOT_LOADED            = -56,
} dcgmReturn_t;

/* ---- Operation mode of an embedded host engine (dcgm_structs.h) ----------- */
typedef enum dcgmOperationMode_enum
{
    DCGM_OPERATION_MODE_AUTO   = 1, /* DCGM samples watched fields on its own threads */
    DCGM_OPERATION_MODE_MANUAL = 2, /* only when the caller calls dcgmUpdateAllFields */
} dcgmOperationMode_t;

/* ---- Entity groups (dcgm_fields.h, enum dcgm_field_entity_group_t) -------- */
typedef enum dcgm_field_entity_group_t
{
    DCGM_FE_NONE   = 0,
    DCGM_FE_GPU    = 1, /* a physical GPU; entity id = DCGM GPU id */
    DCGM_FE_VGPU   = 2,
    DCGM_FE_SWITCH = 3,
    DCGM_FE_GPU_I  = 4, /* a MIG GPU instance */
    DCGM_FE_GPU_CI = 5, /* a MIG compute instance */
} dcgm_field_entity_group_t;

/* An entity's id within its entity group (dcgm_fields.h). */
typedef unsigned int dcgm_field_eid_t;

/* ---- Field types (dcgm_fields.h): dcgmFieldValue_v2.fieldType ------------- */
#define DCGM_FT_BINARY 'b'
#define DCGM_FT_DOUBLE 'd'
#define DCGM_FT_INT64 'i'
#define DCGM_FT_STRING 's'
#define DCGM_FT_TIMESTAMP 't'

/* ---- Field ids (dcgm_fields.h; DCGM 4.6 renames some, the numbers stay) ---- */
#define DCGM_FI_DEV_UUID 54                    /* string; DCGM_FI_DEV_GPU_UUID in 4.6 */
#define DCGM_FI_DEV_GPU_TEMP 150               /* int64, degrees C; GPU only */
#define DCGM_FI_DEV_POWER_USAGE 155            /* double, W; GPU only */
#define DCGM_FI_DEV_FB_TOTAL 250               /* int64, MiB */
#define DCGM_FI_DEV_FB_FREE 251                /* int64, MiB */
#define DCGM_FI_DEV_FB_USED 252                /* int64, MiB */
#define DCGM_FI_PROF_GR_ENGINE_ACTIVE 1001     /* double, ratio 0-1 */
#define DCGM_FI_PROF_SM_ACTIVE 1002            /* double, ratio 0-1 */
#define DCGM_FI_PROF_SM_OCCUPANCY 1003         /* double, ratio 0-1 */
#define DCGM_FI_PROF_PIPE_TENSOR_ACTIVE 1004   /* double, ratio 0-1 */
#define DCGM_FI_PROF_DRAM_ACTIVE 1005          /* double, ratio 0-1 */
#define DCGM_FI_PROF_PIPE_FP64_ACTIVE 1006     /* double, ratio 0-1 */
#define DCGM_FI_PROF_PIPE_FP32_ACTIVE 1007     /* double, ratio 0-1 */
#define DCGM_FI_PROF_PIPE_FP16_ACTIVE 1008     /* double, ratio 0-1 */

/* ---- Handles (dcgm_structs.h) --------------------------------------------- */
typedef uintptr_t dcgmHandle_t;   /* a connection to a host engine */
typedef uintptr_t dcgmGpuGrp_t;   /* a group of entities */
typedef uintptr_t dcgmFieldGrp_t; /* a group of field ids */

/* ---- Groups (dcgm_structs.h, enum dcgmGroupType_enum) --------------------- */
typedef enum dcgmGroupType_enum
{
    DCGM_GROUP_DEFAULT                   = 0,
    DCGM_GROUP_EMPTY                     = 1,
    DCGM_GROUP_DEFAULT_NVSWITCHES        = 2,
    DCGM_GROUP_DEFAULT_INSTANCES         = 3,
    DCGM_GROUP_DEFAULT_COMPUTE_INSTANCES = 4,
    DCGM_GROUP_DEFAULT_EVERYTHING        = 5,
} dcgmGroupType_t;

/* ---- dcgmConnect_v2 options (dcgm_structs.h) ------------------------------ */
typedef struct
{
    unsigned int version;                /* dcgmConnectV2Params_version2 */
    unsigned int persistAfterDisconnect; /* 0: the host engine drops this connection's watches when it goes */
    unsigned int timeoutMs;              /* how long to try to connect */
    unsigned int addressIsUnixSocket;    /* 1: the address is a unix socket path, 0: host[:port] */
} dcgmConnectV2Params_v2;

#define dcgmConnectV2Params_version2 MAKE_DCGM_VERSION(dcgmConnectV2Params_v2, 2)

/* ---- Entities and the MIG hierarchy (dcgm_structs.h) ---------------------- */
typedef struct
{
    dcgm_field_entity_group_t entityGroupId;
    dcgm_field_eid_t entityId;
} dcgmGroupEntityPair_t;

/* Where a MIG entity sits, in NVML's terms. */
typedef struct
{
    char gpuUuid[128];                  /* UUID of the parent GPU (GPU-...) */
    unsigned int nvmlGpuIndex;          /* NVML index of the parent GPU */
    unsigned int nvmlInstanceId;        /* NVML GPU instance id */
    unsigned int nvmlComputeInstanceId; /* NVML compute instance id; UINT_MAX for a GPU instance */
    unsigned int nvmlMigProfileId;      /* NVML GPU or compute instance profile id */
    unsigned int nvmlProfileSlices;     /* slices of that profile */
} dcgmMigEntityInfo_t;

typedef struct
{
    dcgmGroupEntityPair_t entity; /* DCGM_FE_GPU_I or DCGM_FE_GPU_CI */
    dcgmGroupEntityPair_t parent; /* DCGM_FE_GPU of a GPU instance, DCGM_FE_GPU_I of a compute instance */
    dcgmMigEntityInfo_t info;
} dcgmMigHierarchyInfo_v2;

typedef struct
{
    unsigned int version; /* dcgmMigHierarchy_version2 */
    unsigned int count;   /* entries used in entityList */
    dcgmMigHierarchyInfo_v2 entityList[DCGM_MAX_HIERARCHY_INFO];
} dcgmMigHierarchy_v2;

#define dcgmMigHierarchy_version2 MAKE_DCGM_VERSION(dcgmMigHierarchy_v2, 2)

/* ---- Field values (dcgm_structs.h) ---------------------------------------- */
typedef union
{
    int64_t i64;
    double dbl;
    char str[DCGM_MAX_STR_LENGTH];
    char blob[DCGM_MAX_BLOB_LENGTH];
} dcgmFieldValueUnion_t;

typedef struct
{
    unsigned int version; /* dcgmFieldValue_version2 */
    dcgm_field_entity_group_t entityGroupId;
    dcgm_field_eid_t entityId;
    unsigned short fieldId;
    unsigned short fieldType; /* DCGM_FT_* */
    int status;               /* DCGM_ST_OK, or why there is no value */
    unsigned int unused;      /* aligns ts to 8 bytes */
    int64_t ts;               /* microseconds since 1970 when the value was sampled */
    dcgmFieldValueUnion_t value;
} dcgmFieldValue_v2;

#define dcgmFieldValue_version2 MAKE_DCGM_VERSION(dcgmFieldValue_v2, 2)

/* ---- Functions (dcgm_agent.h) --------------------------------------------- */

/* Library start and stop; every other call needs dcgmInit first. */
dcgmReturn_t dcgmInit(void);
dcgmReturn_t dcgmShutdown(void);

/* A host engine inside this process. */
dcgmReturn_t dcgmStartEmbedded(dcgmOperationMode_t opMode, dcgmHandle_t *pDcgmHandle);
dcgmReturn_t dcgmStopEmbedded(dcgmHandle_t pDcgmHandle);

/* A running nv-hostengine, by "host[:port]" or unix socket path. */
dcgmReturn_t dcgmConnect_v2(const char *ipAddress, dcgmConnectV2Params_v2 *connectParams, dcgmHandle_t *pDcgmHandle);
dcgmReturn_t dcgmDisconnect(dcgmHandle_t pDcgmHandle);

/* GPU ids of the GPUs DCGM supports. */
dcgmReturn_t dcgmGetAllSupportedDevices(dcgmHandle_t pDcgmHandle, unsigned int gpuIdList[DCGM_MAX_NUM_DEVICES], int *count);

/* Every GPU instance and compute instance with its DCGM entity id and NVML ids. */
dcgmReturn_t dcgmGetGpuInstanceHierarchy(dcgmHandle_t dcgmHandle, dcgmMigHierarchy_v2 *hierarchy);

/* Entity groups. */
dcgmReturn_t dcgmGroupCreate(dcgmHandle_t pDcgmHandle, dcgmGroupType_t type, const char *groupName, dcgmGpuGrp_t *pDcgmGrpId);
dcgmReturn_t dcgmGroupDestroy(dcgmHandle_t pDcgmHandle, dcgmGpuGrp_t groupId);
dcgmReturn_t dcgmGroupAddEntity(dcgmHandle_t pDcgmHandle, dcgmGpuGrp_t groupId, dcgm_field_entity_group_t entityGroupId, dcgm_field_eid_t entityId);

/* Field groups; names must be unique within the host engine. */
dcgmReturn_t dcgmFieldGroupCreate(dcgmHandle_t dcgmHandle, int numFieldIds, const unsigned short *fieldIds, const char *fieldGroupName, dcgmFieldGrp_t *dcgmFieldGroupId);
dcgmReturn_t dcgmFieldGroupDestroy(dcgmHandle_t dcgmHandle, dcgmFieldGrp_t dcgmFieldGroupId);

/* Watches: sample the fields of a field group on every entity of a group. */
dcgmReturn_t dcgmWatchFields(dcgmHandle_t pDcgmHandle, dcgmGpuGrp_t groupId, dcgmFieldGrp_t fieldGroupId, long long updateFreq, double maxKeepAge, int maxKeepSamples);
dcgmReturn_t dcgmUnwatchFields(dcgmHandle_t pDcgmHandle, dcgmGpuGrp_t groupId, dcgmFieldGrp_t fieldGroupId);
dcgmReturn_t dcgmUpdateAllFields(dcgmHandle_t pDcgmHandle, int waitForUpdate);

/* The latest sample of each field of each entity: values holds entityCount * fieldCount records. */
dcgmReturn_t dcgmEntitiesGetLatestValues(dcgmHandle_t pDcgmHandle, dcgmGroupEntityPair_t entities[], unsigned int entityCount, unsigned short fields[], unsigned int fieldCount, unsigned int flags, dcgmFieldValue_v2 values[]);

/* A static description of a return code. */
const char *errorString(dcgmReturn_t result);

/* ---- Layouts DCGM 4 expects (clang refuses this header otherwise) --------- */
_Static_assert(sizeof(dcgmConnectV2Params_v2) == 16, "dcgmConnectV2Params_v2 is 4 unsigned ints");
_Static_assert(sizeof(dcgmGroupEntityPair_t) == 8, "dcgmGroupEntityPair_t is 2 unsigned ints");
_Static_assert(sizeof(dcgmMigEntityInfo_t) == 148, "128-byte UUID + 5 unsigned ints");
_Static_assert(sizeof(dcgmMigHierarchyInfo_v2) == 164, "2 entity pairs + info");
_Static_assert(sizeof(dcgmMigHierarchy_v2) == 8 + 448 * 164, "version, count, 448 entries");
_Static_assert(sizeof(dcgmFieldValue_v2) == 4128, "32-byte header + 4096-byte value");
_Static_assert(__builtin_offsetof(dcgmFieldValue_v2, ts) == 24, "ts is 8-byte aligned after `unused`");
_Static_assert(__builtin_offsetof(dcgmFieldValue_v2, value) == 32, "value follows ts");

#ifdef __cplusplus
}
#endif

#endif /* MIG_EXPORTER_DCGM_API_H */
