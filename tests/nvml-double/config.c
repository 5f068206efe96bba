/* The config file (its keys: nvml_double.h): defaults, parsing, strict mode, re-reading. */
#include "nvml_double.h"

/* Every return code of nvml.h, by its name without NVML_ERROR_. */
static const struct { const char *name; nvmlReturn_t code; } RETURN_NAMES[] = {
    {"SUCCESS", 0}, {"UNINITIALIZED", 1}, {"INVALID_ARGUMENT", 2}, {"NOT_SUPPORTED", 3},
    {"NO_PERMISSION", 4}, {"ALREADY_INITIALIZED", 5}, {"NOT_FOUND", 6}, {"INSUFFICIENT_SIZE", 7},
    {"INSUFFICIENT_POWER", 8}, {"DRIVER_NOT_LOADED", 9}, {"TIMEOUT", 10}, {"IRQ_ISSUE", 11},
    {"LIBRARY_NOT_FOUND", 12}, {"FUNCTION_NOT_FOUND", 13}, {"CORRUPTED_INFOROM", 14},
    {"GPU_IS_LOST", 15}, {"RESET_REQUIRED", 16}, {"OPERATING_SYSTEM", 17},
    {"LIB_RM_VERSION_MISMATCH", 18}, {"IN_USE", 19}, {"MEMORY", 20}, {"NO_DATA", 21},
    {"VGPU_ECC_NOT_SUPPORTED", 22}, {"INSUFFICIENT_RESOURCES", 23}, {"FREQ_NOT_SUPPORTED", 24},
    {"ARGUMENT_VERSION_MISMATCH", 25}, {"DEPRECATED", 26}, {"NOT_READY", 27},
    {"GPU_NOT_FOUND", 28}, {"INVALID_STATE", 29}, {"UNKNOWN", 999},
};

/* The names gpu.N.unsupported and gpu.N.error.NAME accept: each query's (the
 * names QUERY passes) and each field value's. A group name ("pcie") stands
 * for all its queries ("pcie_generation", ...). */
static const char *const QUERY_NAMES[] = {
    "clock", "clock_event_reasons", "compute_processes", "decoder", "ecc_mode", "encoder",
    "events", "fabric", "fan_speed", "fans", "field_values", "gpm", "graphics_processes",
    "max_clock", "memory", "mig", "mig_device", "mig_device_count", "mig_mode", "name",
    "nvlink_crc_data", "pci_info", "pcie", "pcie_generation", "pcie_max_generation",
    "pcie_max_width", "pcie_width", "power_limit", "power_usage", "process_utilization",
    "pstate", "register_events", "serial", "supported_clock_event_reasons", "temperature",
    "temperature_threshold", "utilization", "uuid", "violation",
#define NAME(id, name, ...) name,
    GPU_FIELDS(NAME) LINK_FIELDS(NAME)
#undef NAME
};

struct config cfg;
/* The config before a re-read, restored when strict mode rejects the new one. */
static struct config previous;
pthread_cond_t config_loaded = PTHREAD_COND_INITIALIZER;
int config_unusable;
struct event queue[MAX_QUEUED_EVENTS];
unsigned int queued;
static struct stat loaded_stat;
static int loaded;

const char *return_name(nvmlReturn_t rc) {
    for (size_t i = 0; i < sizeof RETURN_NAMES / sizeof *RETURN_NAMES; i++)
        if (RETURN_NAMES[i].code == rc) return RETURN_NAMES[i].name;
    return NULL;
}

nvmlReturn_t query_rc(const struct gpu *g, const char *names, int index) {
    /* An element's own code first, then the query's. */
    for (int exact = 1; exact >= 0; exact--) {
        char list[128], *save = NULL;
        snprintf(list, sizeof list, "%s", names);
        for (char *name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save))
            for (unsigned int i = 0; i < g->error_count; i++) {
                const struct query_error *e = &g->errors[i];
                if (!strcmp(e->name, name) && (exact ? index >= 0 && e->index == index : e->index < 0)) return e->rc;
            }
    }
    return NVML_SUCCESS;
}

static void defaults(void) {
    memset(&cfg, 0, sizeof cfg);
    cfg.gpu_count = 1;
    strcpy(cfg.driver_version, "550.54.15");
    strcpy(cfg.nvml_version, "12.550.54.15");
    cfg.cuda_driver_version = 12040;
    cfg.stale_error = NVML_ERROR_UNKNOWN;
    cfg.fabric_info_max_version = 3;
    for (unsigned int i = 0; i < MAX_GPUS; i++) {
        struct gpu *g = &cfg.gpus[i];
#define NUMBER(name, def) g->name = (def);
#define ARRAY(name, n, def) for (unsigned int k = 0; k < (n); k++) g->name[k] = (def);
        GPU_NUMBERS(NUMBER) GPU_ARRAYS(ARRAY)
#undef NUMBER
#undef ARRAY
        for (unsigned int k = 0; k <= GPM_METRIC_MAX; k++) g->gpm_value[k] = __builtin_nan("");
        strcpy(g->name, "NVIDIA A100-SXM4-80GB");
        snprintf(g->uuid, sizeof g->uuid, "GPU-00000000-0000-4000-8000-%012u", i);
        snprintf(g->serial, sizeof g->serial, "13240000%05u", i);
    }
}

/* The line being parsed, for messages, and the number of bad lines so far. */
static const char *parse_path, *parse_key;
static unsigned int parse_line, parse_problems;

static void __attribute__((format(printf, 1, 2))) problem(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "nvml double: %s:%u: %s: ", parse_path, parse_line, parse_key);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    parse_problems++;
}

/* A whole number as strtoull reads it (decimal, 0x hex); anything else is a problem. */
static unsigned long long number(const char *v) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    if (!*v || *end || errno || *v == '-') problem("\"%s\" is not a number", v);
    return n;
}

static nvmlReturn_t return_code(const char *value) {
    for (size_t i = 0; i < sizeof RETURN_NAMES / sizeof *RETURN_NAMES; i++)
        if (strcmp(value, RETURN_NAMES[i].name) == 0) return RETURN_NAMES[i].code;
    char *end;
    long code = strtol(value, &end, 0);
    if (!*value || *end) problem("\"%s\" is neither an NVML return code name nor a number", value);
    return (nvmlReturn_t)code;
}

static void copy(char *dst, size_t size, const char *src) { snprintf(dst, size, "%s", src); }

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *end = s + strlen(s);
    while (end > s && strchr(" \t\r\n", end[-1])) *--end = 0;
    return s;
}

static void set_text(char *dst, size_t size, const char *v) {
    if (strlen(v) >= size) problem("longer than %zu characters", size - 1);
    copy(dst, size, v);
}

/* A "name=NUM" word: 1 and *out set if `word` is one. */
static int word_number(const char *word, const char *name, unsigned long long *out) {
    size_t n = strlen(name);
    if (strncmp(word, name, n) || word[n] != '=') return 0;
    *out = number(word + n + 1);
    return 1;
}

/* "9c6f5af3-53bf-49b5-a436-b66766c413c3" (dashes optional) into 16 bytes. */
static void set_uuid(unsigned char out[16], const char *v) {
    static const char hex[] = "0123456789abcdef";
    unsigned int digits = 0;
    memset(out, 0, 16);
    for (const char *p = v; *p; p++) {
        if (*p == '-') continue;
        const char *at = strchr(hex, tolower((unsigned char)*p));
        if (!at || digits == 32) {
            digits = 0;
            break;
        }
        out[digits / 2] |= (unsigned char)((at - hex) << (digits % 2 ? 0 : 4));
        digits++;
    }
    if (digits != 32) {
        memset(out, 0, 16);
        problem("\"%s\" is not a UUID (32 hex digits)", v);
    }
}

static void queue_event(unsigned int gpu, unsigned long long type, unsigned long long data) {
    if (queued < MAX_QUEUED_EVENTS) queue[queued++] = (struct event){gpu, type, data};
}

/* Queues each event of a list such as "79 48" (XIDs) or "single_bit double_bit". */
static void queue_events(unsigned int gpu, const char *key, const char *v) {
    char list[256], *save = NULL;
    copy(list, sizeof list, v);
    for (char *word = strtok_r(list, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        if (!strcmp(key, "xid")) queue_event(gpu, EVENT_XID, number(word));
        else if (!strcmp(word, "single_bit")) queue_event(gpu, EVENT_SINGLE_BIT_ECC, 0);
        else if (!strcmp(word, "double_bit")) queue_event(gpu, EVENT_DOUBLE_BIT_ECC, 0);
        else problem("unknown ECC event \"%s\"", word);
    }
}

/* Records `rc` for "QUERY" or "QUERY.K". */
static void add_error(struct gpu *g, const char *query, nvmlReturn_t rc) {
    char name[64];
    unsigned int k;
    int used = 0, index = -1;
    copy(name, sizeof name, query);
    char *dot = strrchr(name, '.');
    if (dot && sscanf(dot + 1, "%u%n", &k, &used) == 1 && !dot[1 + used] && k < 64) {
        *dot = 0;
        index = (int)k;
    }
    size_t i = 0, n = sizeof QUERY_NAMES / sizeof *QUERY_NAMES;
    while (i < n && strcmp(name, QUERY_NAMES[i])) i++;
    if (i == n) {
        problem("unknown query or field \"%s\"", query);
        return;
    }
    if (g->error_count == MAX_QUERY_ERRORS) {
        problem("more than %d query return codes", MAX_QUERY_ERRORS);
        return;
    }
    struct query_error *e = &g->errors[g->error_count++];
    *e = (struct query_error){QUERY_NAMES[i], index, rc};
}

/* "name1 name2.K ...": each returns NOT_SUPPORTED. */
static void set_unsupported(struct gpu *g, const char *v) {
    char list[4096], *save = NULL;
    copy(list, sizeof list, v);
    for (char *word = strtok_r(list, " ", &save); word; word = strtok_r(NULL, " ", &save))
        add_error(g, word, NVML_ERROR_NOT_SUPPORTED);
}

/* "MIG-UUID gi=1 ci=0 profile=1g.10gb memory_total=NUM memory_used=NUM" */
static void set_mig(struct mig *m, const char *v) {
    char list[512], *save = NULL;
    unsigned long long n;
    copy(list, sizeof list, v);
    char *word = strtok_r(list, " ", &save);
    if (!word) {
        problem("a MIG device needs a UUID");
        return;
    }
    set_text(m->uuid, sizeof m->uuid, word);
    while ((word = strtok_r(NULL, " ", &save))) {
        if (word_number(word, "gi", &n)) m->gi = (unsigned int)n;
        else if (word_number(word, "ci", &n)) m->ci = (unsigned int)n;
        else if (word_number(word, "memory_total", &n)) m->memory_total = n;
        else if (word_number(word, "memory_used", &n)) m->memory_used = n;
        else if (!strncmp(word, "profile=", 8)) set_text(m->profile, sizeof m->profile, word + 8);
        else problem("unknown MIG device attribute \"%s\"", word);
    }
}

static void set_gpu(unsigned int index, const char *key, const char *v) {
    struct gpu *g = &cfg.gpus[index];
    unsigned int k;
    int used = 0;
    char array[64];
#define NUMBER(name, def) if (!strcmp(key, #name)) { g->name = number(v); return; }
#define ARRAY(name, len, def)                                                                   \
    if (sscanf(key, "%63[a-z_].%u%n", array, &k, &used) == 2 && !key[used] && !strcmp(array, #name) && \
        k < (len)) { g->name[k] = number(v); return; }
#define STRING(name, size) if (!strcmp(key, #name)) { set_text(g->name, sizeof g->name, v); return; }
    GPU_NUMBERS(NUMBER) GPU_ARRAYS(ARRAY) GPU_STRINGS(STRING)
#undef NUMBER
#undef ARRAY
#undef STRING
    if (sscanf(key, "mig_device.%u%n", &k, &used) == 1 && !key[used] && k < MAX_MIG) {
        g->migs[k] = (struct mig){0};
        set_mig(&g->migs[k], v);
    } else if (sscanf(key, "gpm_value.%u%n", &k, &used) == 1 && !key[used] && k <= GPM_METRIC_MAX) {
        char *end;
        g->gpm_value[k] = strtod(v, &end);
        if (!*v || *end) problem("\"%s\" is not a number", v);
    } else if (sscanf(key, "nvlink_fail.%u%n", &k, &used) == 1 && !key[used] && k < MAX_NVLINKS) {
        g->nvlink_fail[k] = return_code(v);
    } else if (!strcmp(key, "fail")) g->fail = return_code(v);
    else if (!strcmp(key, "unsupported")) set_unsupported(g, v);
    else if (!strncmp(key, "error.", 6)) add_error(g, key + 6, return_code(v));
    else if (!strcmp(key, "xid") || !strcmp(key, "ecc_events")) queue_events(index, key, v);
    else if (!strcmp(key, "fabric_status")) g->fabric_status = return_code(v);
    else if (!strcmp(key, "fabric_cluster_uuid")) set_uuid(g->fabric_cluster_uuid, v);
    else problem("unknown key");
}

/* "gpu=0 pid=4242 type=compute memory=1073741824 gi=1 ci=0 sm=50 mem=20 enc=0 dec=0";
 * gi and ci default to 0xFFFFFFFF (not in a MIG instance). */
static void add_process(const char *v) {
    if (cfg.process_count >= MAX_PROCESSES) {
        problem("more than %d processes", MAX_PROCESSES);
        return;
    }
    struct process p = {.gi = 0xFFFFFFFF, .ci = 0xFFFFFFFF};
    unsigned int *const fields[] = {&p.gpu, &p.pid, &p.gi, &p.ci, &p.sm, &p.mem, &p.enc, &p.dec};
    const char *const names[] = {"gpu", "pid", "gi", "ci", "sm", "mem", "enc", "dec"};
    char list[512], *save = NULL;
    unsigned long long n;
    copy(list, sizeof list, v);
    for (char *word = strtok_r(list, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        size_t i = 0;
        while (i < 8 && !word_number(word, names[i], &n)) i++;
        if (i < 8) *fields[i] = (unsigned int)n;
        else if (word_number(word, "memory", &n)) p.memory = n;
        else if (!strcmp(word, "type=compute") || !strcmp(word, "type=graphics")) p.graphics = word[5] == 'g';
        else problem("unknown process attribute \"%s\"", word);
    }
    cfg.processes[cfg.process_count++] = p;
}

/* "GPU COUNT FIRST_PID": COUNT compute processes of 1 MiB and 1% SM each. */
static void add_synthetic_processes(const char *v) {
    unsigned int gpu = 0, count = 0, first = 0;
    int used = 0;
    if (sscanf(v, "%u %u %u %n", &gpu, &count, &first, &used) != 3 || v[used]) {
        problem("\"%s\" is not \"GPU COUNT FIRST_PID\"", v);
        return;
    }
    for (unsigned int i = 0; i < count && cfg.process_count < MAX_PROCESSES; i++)
        cfg.processes[cfg.process_count++] = (struct process){gpu, first + i, 0, 0xFFFFFFFF, 0xFFFFFFFF, 1, 0, 0, 0, 1048576};
}

static void set(const char *key, const char *value) {
    unsigned int index;
    int used = 0;
    unsigned long long n;
    if (sscanf(key, "gpu.%u.%n", &index, &used) == 1 && used > 0) {
        if (index < MAX_GPUS) set_gpu(index, key + used, value);
        else problem("GPU index %u out of range (at most %d)", index, MAX_GPUS - 1);
    } else if (!strcmp(key, "gpu_count")) {
        cfg.gpu_count = (unsigned int)(n = number(value));
        if (n > MAX_GPUS) {
            problem("at most %d", MAX_GPUS);
            cfg.gpu_count = MAX_GPUS;
        }
    } else if (!strcmp(key, "init_error")) cfg.init_error = return_code(value);
    else if (!strcmp(key, "driver_version")) set_text(cfg.driver_version, sizeof cfg.driver_version, value);
    else if (!strcmp(key, "nvml_version")) set_text(cfg.nvml_version, sizeof cfg.nvml_version, value);
    else if (!strcmp(key, "cuda_driver_version")) cfg.cuda_driver_version = (int)number(value);
    else if (!strcmp(key, "delay_ms")) cfg.delay_ms = (unsigned int)number(value);
    else if (!strcmp(key, "call_log")) set_text(cfg.call_log, sizeof cfg.call_log, value);
    else if (!strcmp(key, "field_log")) set_text(cfg.field_log, sizeof cfg.field_log, value);
    else if (!strcmp(key, "driver_generation")) cfg.driver_generation = (unsigned int)number(value);
    else if (!strcmp(key, "stale_error")) cfg.stale_error = return_code(value);
    else if (!strcmp(key, "fabric_info_max_version")) {
        cfg.fabric_info_max_version = (unsigned int)number(value);
        if (cfg.fabric_info_max_version != 2 && cfg.fabric_info_max_version != 3) problem("2 or 3");
    } else if (!strncmp(key, "process.", 8)) add_process(value);
    else if (!strcmp(key, "synthetic_processes")) add_synthetic_processes(value);
    else problem("unknown key");
}

static int strict(void) {
    const char *s = getenv("NVML_DOUBLE_STRICT");
    return s && *s && strcmp(s, "0");
}

/* Strict mode: a config with problems is unusable. The first one makes
 * nvmlInit_v2 fail; a re-read keeps the config that was there before. */
static void reject(const char *path, unsigned int queued_before) {
    if (!loaded || config_unusable) {
        config_unusable = 1;
        fprintf(stderr, "nvml double: NVML_DOUBLE_STRICT: %s is unusable; nvmlInit_v2 fails with UNKNOWN\n", path);
        return;
    }
    cfg = previous;
    queued = queued_before;
    fprintf(stderr, "nvml double: NVML_DOUBLE_STRICT: ignoring the changed %s; keeping the previous config\n", path);
}

/* Parses the open config file into cfg (from the defaults). */
static void parse(FILE *f) {
    static char line[8192];
    while (fgets(line, sizeof line, f)) {
        parse_line++;
        size_t length = strlen(line);
        if (length == sizeof line - 1 && line[length - 1] != '\n') {
            parse_key = "";
            problem("longer than %zu characters", sizeof line - 2);
            while (fgets(line, sizeof line, f) && line[strlen(line) - 1] != '\n') continue;
            continue;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *eq = strchr(line, '=');
        if (!eq) {
            parse_key = trim(line);
            if (*parse_key) problem("not a \"key = value\" line");
            continue;
        }
        *eq = 0;
        parse_key = trim(line);
        set(parse_key, trim(eq + 1));
    }
}

void reload(void) {
    const char *path = getenv("NVML_DOUBLE_CONFIG");
    struct stat st;
    FILE *f = NULL;
    if (path && stat(path, &st) == 0) {
        if (loaded && st.st_ino == loaded_stat.st_ino && st.st_size == loaded_stat.st_size &&
            st.st_mtim.tv_sec == loaded_stat.st_mtim.tv_sec && st.st_mtim.tv_nsec == loaded_stat.st_mtim.tv_nsec)
            return;
        f = fopen(path, "r");
    }
    if (!f) {
        if (loaded) return;
        defaults();
        if (path) {
            fprintf(stderr, "nvml double: cannot read %s: %s\n", path, strerror(errno));
            parse_path = path;
            if (strict()) reject(path, queued);
        }
        loaded = 1;
        return;
    }
    unsigned int queued_before = queued;
    if (strict()) previous = cfg;
    defaults();
    parse_path = path;
    parse_line = 0;
    parse_problems = 0;
    parse(f);
    fclose(f);
    if (parse_problems && strict()) reject(path, queued_before);
    else config_unusable = 0;
    loaded_stat = st;
    loaded = 1;
    pthread_cond_broadcast(&config_loaded);
}
