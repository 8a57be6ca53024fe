/* The replay's hot loop, fused: one JSON line -> LiteLLM's rules -> the aggregator's accumulators.
 *
 * See hotloop.py for the contract: Loop.feed(lines) has exactly the effect of
 *     for line in each_line(lines): agg.add(parse(line))
 * (archive.Lines blocks split here), its additions waiting in C until Loop.settle (see Pend).
 * It takes a line itself only when it can prove the Python path gives the same result, and hands
 * every other line to that path (`feed_line`). It takes: StandardLoggingPayloads of successes and
 * failures, logmetrics request records of successes, and compact request records. A failure's
 * label sets are made in Python (slp.failure_labels), once per distinct set of raw values; the
 * callback's failure records (their facts) go the Python way. Everything unusual is declined:
 * escapes or non-ASCII bytes in typed strings, duplicate keys, numbers a float does not hold
 * exactly where exactness matters, time forms other than the ones LiteLLM writes, anything msgspec
 * would reject or that might raise in slp.py / parse.py.
 *
 * The rules follow slp.py (event_from_payload, _failure), parse.py (_compact_record,
 * _compact_time) and aggregate.py (_request, _success, _observe, _view, set_state) line by line;
 * the comments name the Python they mirror. Deployment state writes of keys already there wait
 * too (StateWrite), until the feed ends or a line goes the Python way. tests/test_hotloop.py holds
 * both paths to identical results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * JSON values of typed fields
 */
enum { V_ABSENT = 0, V_NULL, V_STR, V_INT, V_FLOAT, V_TRUE, V_FALSE, V_OBJ, V_RAW };

typedef struct {
    unsigned char t;
    const char *p; /* V_STR: the text between the quotes (plain ASCII, no escapes); V_RAW: the value */
    Py_ssize_t n;
    int64_t i;     /* V_INT */
    double d;      /* V_INT (as float) and V_FLOAT */
} Val;

/* field kinds, as records.py types them */
enum {
    K_STR,    /* str | None */
    K_FLOAT,  /* float | None (an integer is converted) */
    K_BOOL,   /* bool | None */
    K_COUNT,  /* Count | None: an integer 0..2**53 */
    K_COUNTF, /* Count | float | None */
    K_STRINT, /* str | int | None */
    K_INT,    /* int | None */
    K_TIME,   /* str | float | None */
    K_RAW,    /* msgspec.Raw: any value, kept as text */
    K_OBJ,    /* a Struct | None */
    K_DICT,   /* dict[str, str | None] | None (a child schema names the keys read) */
    K_NO,     /* present at all: decline (journald envelopes, ...) */
    K_TEXT,   /* str | None that the loop never reads (messages): escapes allowed, ASCII only */
};

#define MAXF 48

typedef struct Schema {
    const char *names[MAXF];
    unsigned char kinds[MAXF];
    const struct Schema *children[MAXF];
    int n;
    signed char table[256][4]; /* hash -> field indices, -1 terminated */
    unsigned char lens[MAXF];
} Schema;

static unsigned key_hash(const char *k, Py_ssize_t n) {
    return ((unsigned)n * 7u + (unsigned char)k[0] * 3u + (unsigned char)k[n - 1] * 5u +
            (unsigned char)k[n / 2] * 11u) & 255u;
}

static int schema_index(Schema *s) {
    memset(s->table, -1, sizeof s->table);
    for (int f = 0; f < s->n; f++) {
        const char *name = s->names[f];
        s->lens[f] = (unsigned char)strlen(name);
        unsigned h = key_hash(name, s->lens[f]);
        int j = 0;
        while (j < 3 && s->table[h][j] >= 0) j++;
        if (j == 3) return -1;
        s->table[h][j] = (signed char)f;
    }
    return 0;
}

static int schema_find(const Schema *s, const char *k, Py_ssize_t n) {
    if (n == 0) return -1;
    const signed char *c = s->table[key_hash(k, n)];
    for (int j = 0; j < 4 && c[j] >= 0; j++) {
        if (s->lens[c[j]] == n && memcmp(s->names[c[j]], k, (size_t)n) == 0) return c[j];
    }
    return -1;
}

/* The schemas: records.py's structs, field for field (the order here is the enum's). */
enum { TD_CACHED, TD_WRITE, TD_CREATION, TD_AUDIO, TD_REASONING, TD_N };
static Schema S_TD = {{"cached_tokens", "cache_write_tokens", "cache_creation_tokens", "audio_tokens",
                       "reasoning_tokens"},
                      {K_COUNTF, K_COUNTF, K_COUNTF, K_COUNTF, K_COUNTF}, {0}, TD_N, {{0}}};

enum { U_PTD, U_CTD, U_TIER, U_CACHE_READ, U_CACHE_CREATION, U_IMAGES, U_VIDEO, U_N };
static Schema S_USAGE = {{"prompt_tokens_details", "completion_tokens_details", "service_tier",
                          "cache_read_input_tokens", "cache_creation_input_tokens", "output_image_count",
                          "duration_seconds"},
                         {K_OBJ, K_OBJ, K_STR, K_COUNTF, K_COUNTF, K_COUNTF, K_FLOAT}, {&S_TD, &S_TD}, U_N, {{0}}};

enum { M_HASH, M_ALIAS, M_TEAM, M_TEAM_ALIAS, M_USER, M_EMAIL, M_ORG, M_ORG_ALIAS, M_END_USER, M_ROUTE, M_IP,
       M_AGENT, M_USAGE, M_N };
static Schema S_MD = {{"user_api_key_hash", "user_api_key_alias", "user_api_key_team_id", "user_api_key_team_alias",
                       "user_api_key_user_id", "user_api_key_user_email", "user_api_key_org_id",
                       "user_api_key_org_alias", "user_api_key_end_user_id", "user_api_key_request_route",
                       "requester_ip_address", "user_agent", "usage_object"},
                      {K_STR, K_STR, K_STR, K_STR, K_STR, K_STR, K_STR, K_STR, K_STR, K_STR, K_STR, K_STR, K_OBJ},
                      {[M_USAGE] = &S_USAGE}, M_N, {{0}}};

static Schema S_HP = {{"litellm_overhead_time_ms"}, {K_FLOAT}, {0}, 1, {{0}}};
static Schema S_EI = {{"error_code", "error_class", "llm_provider"}, {K_STRINT, K_STR, K_STR}, {0}, 3, {{0}}};
static Schema S_ZCD = {{"reason"}, {K_STR}, {0}, 1, {{0}}};

#define PAYLOAD_NAMES                                                                                             \
    "status", "call_type", "model", "model_group", "model_id", "custom_llm_provider", "api_base", "startTime",   \
        "endTime", "completionStartTime", "stream", "cache_hit", "prompt_tokens", "completion_tokens",            \
        "total_tokens", "response_cost", "end_user", "metadata", "hidden_params", "error_information",             \
        "error_str", "zero_cost_diagnostic", "response", "model_parameters"
#define PAYLOAD_KINDS                                                                                             \
    K_STR, K_STR, K_STR, K_STR, K_STR, K_STR, K_STR, K_FLOAT, K_FLOAT, K_FLOAT, K_BOOL, K_BOOL, K_COUNT, K_COUNT, \
        K_COUNT, K_FLOAT, K_STR, K_OBJ, K_OBJ, K_OBJ, K_TEXT, K_OBJ, K_RAW, K_RAW
enum { P_STATUS, P_CALL_TYPE, P_MODEL, P_GROUP, P_MODEL_ID, P_PROVIDER, P_API_BASE, P_START, P_END, P_COMPLETION,
       P_STREAM, P_CACHE_HIT, P_PROMPT, P_COMPLETION_TOKENS, P_TOTAL, P_COST, P_END_USER, P_METADATA, P_HIDDEN,
       P_ERROR_INFO, P_ERROR_STR, P_ZERO_COST, P_RESPONSE, P_MODEL_PARAMETERS, P_N };
#define PAYLOAD_CHILDREN [P_METADATA] = &S_MD, [P_HIDDEN] = &S_HP, [P_ERROR_INFO] = &S_EI, [P_ZERO_COST] = &S_ZCD

static Schema S_PAYLOAD = {{PAYLOAD_NAMES}, {PAYLOAD_KINDS}, {PAYLOAD_CHILDREN}, P_N, {{0}}};

enum { DS_NAME, DS_ID, DS_BASE, DS_PROVIDER, DS_N };
static Schema S_STATE = {{"litellm_model_name", "model_id", "api_base", "api_provider"},
                         {K_STR, K_STR, K_STR, K_STR}, {0}, DS_N, {{0}}};
static Schema S_ANYDICT = {{0}, {0}, {0}, 0, {{0}}};

enum { F_MODEL, F_STREAM, F_START, F_END, F_API_START, F_COMPLETION_START, F_HOOK_START, F_HOOK_END, F_QUEUE,
       F_PROVIDER, F_END_USER, F_ORIGINAL_GROUP, F_MODEL_INFO_ID, F_TIER, F_SKIP, F_EXC_CLASS, F_EXC_STATUS,
       F_DEPLOYMENT_LABELS, F_DEPLOYMENT_STATE, F_ERROR_MESSAGE, F_N };
static Schema S_FACTS = {{"model", "stream", "start_time", "end_time", "api_call_start_time", "completion_start_time",
                          "hook_start_time", "hook_end_time", "queue_time_seconds", "custom_llm_provider", "end_user",
                          "original_model_group", "model_info_id", "service_tier", "skip_metrics", "exception_class",
                          "exception_status", "deployment_labels", "deployment_state", "error_message"},
                         {K_STR, K_BOOL, K_TIME, K_TIME, K_TIME, K_TIME, K_TIME, K_TIME, K_FLOAT, K_STR, K_STR, K_STR,
                          K_STR, K_STR, K_BOOL, K_TEXT, K_TEXT, K_DICT, K_DICT, K_TEXT},
                         {[F_DEPLOYMENT_LABELS] = &S_ANYDICT, [F_DEPLOYMENT_STATE] = &S_STATE}, F_N, {{0}}};

static Schema S_TOKENS = {{"prompt", "completion", "total"}, {K_COUNT, K_COUNT, K_COUNT}, {0}, 3, {{0}}};

enum { L_RECORD = P_N, L_VERSION, L_HOOK, L_TIME, L_PAYLOAD, L_FACTS, L_LABELS, L_PROVIDER, L_LATENCY, L_TOKENS,
       L_ERROR, L_LEVEL, L_TIMESTAMP, L_MESSAGE, L_COMPONENT, L_CALL_ID, L_JOURNAL_MESSAGE, L_REALTIME, L_PRIORITY,
       L_N };
static Schema S_LINE = {
    {PAYLOAD_NAMES, "logmetrics_record", "version", "hook", "time", "payload", "facts", "labels", "provider",
     "latency_ms", "tokens", "error", "level", "timestamp", "message", "component", "litellm_call_id", "MESSAGE",
     "__REALTIME_TIMESTAMP", "PRIORITY"},
    {PAYLOAD_KINDS, K_STR, K_INT, K_STR, K_FLOAT, K_OBJ, K_OBJ, K_DICT, K_STR, K_FLOAT, K_OBJ, K_TEXT, K_STR, K_TIME,
     K_TEXT, K_TEXT, K_TEXT, K_NO, K_NO, K_NO},
    {PAYLOAD_CHILDREN, [L_PAYLOAD] = &S_PAYLOAD, [L_FACTS] = &S_FACTS, [L_LABELS] = &S_ANYDICT,
     [L_TOKENS] = &S_TOKENS},
    L_N, {{0}}};

/* Where each object's values live: an instance tree laid out once (the payload's metadata at top
 * level and inside "payload" are different instances of one schema). */
#define MAX_INST 32
#define POOL 512
typedef struct {
    const Schema *sc;
    int base;
    int child[MAXF];
} Inst;
static Inst insts[MAX_INST];
static int n_insts, pool_used;

static int layout(const Schema *sc) {
    if (n_insts == MAX_INST || pool_used + sc->n > POOL) return -1;
    int id = n_insts++;
    insts[id].sc = sc;
    insts[id].base = pool_used;
    pool_used += sc->n;
    for (int f = 0; f < sc->n; f++) {
        insts[id].child[f] = -1;
        if (sc->children[f] != NULL) {
            int c = layout(sc->children[f]);
            if (c < 0) return -1;
            insts[id].child[f] = c;
        }
    }
    return id;
}

/* ---------------------------------------------------------------------------------------------
 * The scanner. Every function returns 0, or -1 to decline the line (never an exception).
 */
typedef struct {
    const char *p, *end;
    int depth;
    Val *pool;
} Scan;

#define MAX_DEPTH 64

static inline void ws(Scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static inline int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* byte classes inside a string: 0 plain ASCII, 1 the closing quote, 2 a backslash, 3 a control
 * character (invalid), 4 a byte above 0x7e (not plain) */
static unsigned char string_class[256];

static void init_string_class(void) {
    for (int c = 0; c < 256; c++) string_class[c] = c < 0x20 ? 3 : c > 0x7e ? 4 : 0;
    string_class['"'] = 1;
    string_class['\\'] = 2;
}

/* Past the plain bytes (string_class 0) at p, as many as whole words can tell: to the first byte
 * that is not (below 0x20, above 0x7e, a quote or a backslash), or to fewer than a word before
 * `end`; the bytes left are then looked at one by one. SSE2 (every x86-64) compares 16 bytes at
 * once and the mask's lowest bit is the byte; elsewhere a 64-bit word's arithmetic tells whether
 * any of 8 is (a set high bit per byte that matches, and maybe some after it, never one before). */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end) {
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), low = _mm_set1_epi8(0x20),
                  del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        /* signed: bytes above 0x7f are negative, so below 0x20 too */
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                 _mm_or_si128(_mm_cmplt_epi8(v, low), _mm_cmpeq_epi8(v, del)));
        unsigned mask = (unsigned)_mm_movemask_epi8(m);
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
    return p;
}
#else
static inline int special8(const unsigned char *p) {
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    uint64_t below = (w - ones * 0x20) & ~w;                          /* < 0x20 (high bit clear) */
    uint64_t above = (w + ones * (0x7f - 0x7e)) | w;                 /* > 0x7e, or high bit set */
    uint64_t zero = ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    return ((below | above | zero) & highs) != 0;
}

static inline const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end) {
    while (end - p >= 8 && !special8(p)) p += 8;
    return p;
}
#endif

/* A string at s->p (its opening quote). *plain: no escape and printable ASCII only. */
static int scan_string(Scan *s, const char **start, Py_ssize_t *len, int *plain) {
    const unsigned char *p = (const unsigned char *)s->p + 1, *end = (const unsigned char *)s->end;
    int pl = 1;
    *start = (const char *)p;
    for (;;) {
        p = skip_plain(p, end);
        while (p < end && string_class[*p] == 0) p++;
        if (p >= end) return -1;
        switch (string_class[*p]) {
        case 1:
            *len = (const char *)p - *start;
            *plain = pl;
            s->p = (const char *)p + 1;
            return 0;
        case 2: {
            pl = 0;
            if (p + 1 >= end) return -1;
            unsigned char e = p[1];
            if (e == 'u') {
                if (p + 5 >= end) return -1;
                int v = 0;
                for (int k = 2; k < 6; k++) {
                    int h = hexval((char)p[k]);
                    if (h < 0) return -1;
                    v = v * 16 + h;
                }
                if (v >= 0xD800 && v <= 0xDFFF) return -1; /* surrogates: parse.py mends them */
                p += 6;
                continue;
            }
            if (e == 0 || !strchr("\"\\/bfnrt", e)) return -1;
            p += 2;
            continue;
        }
        case 3: return -1;
        default:
            pl = 0;
            p++;
        }
    }
}

/* A number token: JSON's grammar exactly. */
static int scan_number(Scan *s, int *is_int, int *negative, int *digits) {
    const char *p = s->p, *end = s->end;
    *negative = 0;
    if (p < end && *p == '-') {
        *negative = 1;
        p++;
    }
    if (p >= end) return -1;
    const char *d0 = p;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return -1;
    }
    *digits = (int)(p - d0);
    *is_int = 1;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !(*p >= '0' && *p <= '9')) return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
        *is_int = 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !(*p >= '0' && *p <= '9')) return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
        *is_int = 0;
    }
    s->p = p;
    return 0;
}

static int lit(Scan *s, const char *word, size_t n) {
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return -1;
    s->p += n;
    return 0;
}

static int skip_value(Scan *s);

/* An object member's key and the colon after it. */
static int member_key(Scan *s, const char **k, Py_ssize_t *kn, int *plain) {
    if (s->p >= s->end || *s->p != '"' || scan_string(s, k, kn, plain)) return -1;
    ws(s);
    if (s->p >= s->end || *s->p != ':') return -1;
    s->p++;
    ws(s);
    return 0;
}

/* After a member or element: 1 a comma (another one follows), 0 the closing bracket, -1 else. */
static int next_member(Scan *s, char close) {
    ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == ',') {
        s->p++;
        ws(s);
        return 1;
    }
    if (*s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    return -1;
}

/* An object or array at s->p: opened, and empty (0), or not (1); -1 too deep. */
static int open_container(Scan *s, char close) {
    if (++s->depth > MAX_DEPTH) return -1;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    return 1;
}

static int skip_container(Scan *s, char close, int object) {
    int more = open_container(s, close);
    while (more > 0) {
        const char *k;
        Py_ssize_t kn;
        int plain;
        if ((object && member_key(s, &k, &kn, &plain)) || skip_value(s)) return -1;
        more = next_member(s, close);
    }
    return more;
}

static int skip_value(Scan *s) {
    if (s->p >= s->end) return -1;
    switch (*s->p) {
    case '"': {
        const char *k;
        Py_ssize_t kn;
        int plain;
        return scan_string(s, &k, &kn, &plain);
    }
    case '{': return skip_container(s, '}', 1);
    case '[': return skip_container(s, ']', 0);
    case 't': return lit(s, "true", 4);
    case 'f': return lit(s, "false", 5);
    case 'n': return lit(s, "null", 4);
    default: {
        int is_int, neg, digits;
        return scan_number(s, &is_int, &neg, &digits);
    }
    }
}

static int parse_int(const char *p, const char *end, int64_t *out) {
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (end - p > 18) return -1;
    int64_t v = 0;
    for (; p < end; p++) v = v * 10 + (*p - '0');
    *out = neg ? -v : v;
    return 0;
}

static int parse_object(Scan *s, int inst, int dict);

/* A decimal number whose digits make an integer below 2**53 and whose power of ten is at most
 * 22 either way: the quotient or product of two exact doubles, correctly rounded by IEEE (Clinger's
 * fast path), as every correct parser gives it. With x87's 64-bit long double, up to 19 digits and
 * powers up to 27 (both exact there): the quotient or product rounded once to 64 bits, then to 53,
 * which is the correct rounding unless the first rounding landed on a halfway point between two
 * doubles (or next to one): then 0. Python's repr of a double takes up to 17 digits (a record time
 * in microseconds takes 17). Else 0: PyOS_string_to_double does it. */
static int fast_float(const char *p, const char *end, double *out) {
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    int neg = 0, digits = 0, exp10 = 0;
    uint64_t m = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (m || *p != '0') digits++;
        m = m * 10 + (uint64_t)(*p - '0');
        if (digits > 19) return 0;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (m || *p != '0') digits++;
            m = m * 10 + (uint64_t)(*p - '0');
            exp10--;
            if (digits > 19) return 0;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0, e = 0;
        if (*p == '+' || *p == '-') eneg = *p++ == '-';
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            e = e * 10 + (*p - '0');
            if (e > 1000) return 0;
        }
        exp10 += eneg ? -e : e;
    }
    double d;
    if (m <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
        d = (double)m;
        d = exp10 < 0 ? d / pow10[-exp10] : d * pow10[exp10];
    } else {
#if LDBL_MANT_DIG == 64
        static const long double lpow10[] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
                                             1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
                                             1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
        if (exp10 < -27 || exp10 > 27) return 0;
        volatile long double x = (long double)m; /* volatile: each step rounded to 64 bits, in memory */
        x = exp10 < 0 ? x / lpow10[-exp10] : x * lpow10[exp10];
        if (x != 0.0L) {
            int e;
            uint64_t bits = (uint64_t)ldexpl(frexpl(x, &e), 64); /* the 64-bit significand */
            uint64_t low = bits & 0x7FF;                           /* what rounding to 53 bits drops */
            if (low >= 0x3FF && low <= 0x401) return 0;
        }
        d = (double)x;
        if (!isfinite(d) || (d != 0.0 && fabs(d) < DBL_MIN)) return 0; /* out of range, or subnormal */
#else
        return 0;
#endif
    }
    *out = neg ? -d : d;
    return 1;
}

/* One typed field's value into v. */
static int read_field(Scan *s, int kind, int child_inst, Val *v) {
    if (s->p >= s->end) return -1;
    char c = *s->p;
    if (c == 'n') {
        if (kind == K_NO || lit(s, "null", 4)) return -1;
        v->t = V_NULL;
        return 0;
    }
    switch (kind) {
    case K_NO: return -1;
    case K_RAW: {
        const char *start = s->p;
        if (skip_value(s)) return -1;
        v->t = V_RAW;
        v->p = start;
        v->n = s->p - start;
        return 0;
    }
    case K_OBJ:
    case K_DICT:
        if (c != '{') return -1;
        v->t = V_OBJ;
        return parse_object(s, child_inst, kind == K_DICT);
    case K_BOOL:
        if (c == 't' && !lit(s, "true", 4)) {
            v->t = V_TRUE;
            return 0;
        }
        if (c == 'f' && !lit(s, "false", 5)) {
            v->t = V_FALSE;
            return 0;
        }
        return -1;
    default: break;
    }
    if (c == '"') {
        if (kind == K_TEXT) { /* valid escapes, no UTF-8 to check: the value is never used here */
            const char *start = s->p + 1;
            int plain;
            if (scan_string(s, &v->p, &v->n, &plain)) return -1;
            for (const char *q = start; q < s->p; q++)
                if ((unsigned char)*q > 0x7e) return -1;
            v->t = V_RAW;
            return 0;
        }
        if (kind != K_STR && kind != K_STRINT && kind != K_TIME) return -1;
        int plain;
        if (scan_string(s, &v->p, &v->n, &plain) || !plain) return -1;
        v->t = V_STR;
        return 0;
    }
    if (c != '-' && !(c >= '0' && c <= '9')) return -1;
    if (kind == K_STR || kind == K_TEXT) return -1;
    const char *start = s->p;
    int is_int, neg, digits;
    if (scan_number(s, &is_int, &neg, &digits)) return -1;
    if (is_int) {
        if (parse_int(start, s->p, &v->i)) return -1;
        if (kind == K_COUNT || kind == K_COUNTF) {
            if (neg || v->i > (INT64_C(1) << 53)) return -1; /* msgspec: a ValidationError */
        }
        v->t = V_INT;
        v->d = (double)v->i;
        return 0;
    }
    if (kind == K_COUNT || kind == K_INT || kind == K_STRINT) return -1;
    if (fast_float(start, s->p, &v->d)) {
        v->t = V_FLOAT;
        return 0;
    }
    char *stop;
    double d = PyOS_string_to_double(start, &stop, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (stop != s->p || !isfinite(d)) return -1;
    v->t = V_FLOAT;
    v->d = d;
    return 0;
}

/* An object at s->p into instance `inst`'s values. A dict (K_DICT) takes any key, whose value
 * must be a string or null, and the last of duplicate keys wins; a struct declines duplicates. */
static int parse_object(Scan *s, int inst, int dict) {
    const Inst *in = &insts[inst];
    Val *vals = s->pool + in->base;
    memset(vals, 0, sizeof(Val) * (size_t)in->sc->n); /* an object is parsed once: its fields start absent */
    int more = open_container(s, '}');
    while (more > 0) {
        const char *k;
        Py_ssize_t kn;
        int plain;
        if (member_key(s, &k, &kn, &plain) || !plain) return -1; /* an escaped key may name a field */
        int f = schema_find(in->sc, k, kn);
        if (f < 0) {
            Val scratch = {0};
            if (dict ? read_field(s, K_STR, -1, &scratch) : skip_value(s)) return -1;
        } else {
            if (vals[f].t != V_ABSENT && !dict) return -1;
            vals[f].t = V_ABSENT;
            if (read_field(s, in->sc->kinds[f], in->child[f], &vals[f])) return -1;
        }
        more = next_member(s, '}');
    }
    return more;
}

/* ---------------------------------------------------------------------------------------------
 * Instances and accessors
 */
static int I_LINE, I_MD, I_USAGE, I_PTD, I_CTD, I_HP, I_ZCD, I_PAY, I_PMD, I_PUSAGE, I_PPTD, I_PCTD, I_PHP, I_PZCD,
    I_FACTS, I_STATE, I_TOKENS;

typedef struct {
    Val pool[POOL];
} Rec;

#define AT(R, inst, f) (&(R)->pool[insts[inst].base + (f)])

typedef struct {
    const char *p; /* NULL: None */
    Py_ssize_t n;
} Str;

static inline Str str_of(const Val *v) {
    Str s = {NULL, 0};
    if (v->t == V_STR) {
        s.p = v->p;
        s.n = v->n;
    }
    return s;
}

static inline int is_set(const Val *v) { return v->t != V_ABSENT && v->t != V_NULL; }
static inline int truthy_str(Str s) { return s.p != NULL && s.n > 0; }
static inline int str_eq(Str a, Str b) {
    if (a.p == NULL || b.p == NULL) return a.p == b.p;
    return a.n == b.n && memcmp(a.p, b.p, (size_t)a.n) == 0;
}
static inline int str_is(Str a, const char *lit_) {
    size_t n = strlen(lit_);
    return a.p != NULL && (size_t)a.n == n && memcmp(a.p, lit_, n) == 0;
}
static inline Str or_empty(Str s) {
    if (s.p == NULL || s.n == 0) {
        s.p = "";
        s.n = 0;
    }
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * Times (slp.micros, slp.checked_time)
 */
static const double MAX_VALUE = 1e200;

typedef struct {
    int set;
    int64_t us;
} Micros;

static int days_in_month(int y, int m) {
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return d[m - 1];
}

static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits_at(const char *p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

/* micros(): an epoch float in [0, 1e11), or naive "YYYY-MM-DDTHH:MM:SS[.ffffff]" (what the
 * callback writes; wall() reads it with datetime.fromisoformat). Anything else declines. */
static int micros(const Val *v, Micros *out) {
    out->set = 0;
    if (v->t == V_ABSENT || v->t == V_NULL) return 0;
    if (v->t == V_INT || v->t == V_FLOAT) {
        double x = v->d;
        if (!(x >= 0.0 && x < 1e11)) return -1;
        double whole;
        double fraction = modf(x, &whole);
        out->us = (int64_t)whole * 1000000 + (int64_t)nearbyint(fraction * 1e6);
        out->set = 1;
        return 0;
    }
    if (v->t != V_STR || (v->n != 19 && v->n != 26)) return -1;
    const char *p = v->p;
    int y, mo, d, h, mi, se, us = 0;
    if (digits_at(p, 4, &y) || p[4] != '-' || digits_at(p + 5, 2, &mo) || p[7] != '-' || digits_at(p + 8, 2, &d) ||
        p[10] != 'T' || digits_at(p + 11, 2, &h) || p[13] != ':' || digits_at(p + 14, 2, &mi) || p[16] != ':' ||
        digits_at(p + 17, 2, &se))
        return -1;
    if (v->n == 26 && (p[19] != '.' || digits_at(p + 20, 6, &us))) return -1;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59) return -1;
    out->us = ((days_from_civil(y, mo, d) * 24 + h) * 3600 + mi * 60 + se) * INT64_C(1000000) + us;
    out->set = 1;
    return 0;
}

/* _seconds(): (end - start) / 10**6, correctly rounded as Python's int division is */
typedef struct {
    int set;
    double v;
} Opt;

static int seconds(Micros a, Micros b, Opt *out) {
    out->set = 0;
    if (!a.set || !b.set) return 0;
    int64_t diff = b.us - a.us;
    if (diff > (INT64_C(1) << 53) || diff < -(INT64_C(1) << 53)) return -1;
    out->set = 1;
    out->v = (double)diff / 1e6;
    return 0;
}

static inline int checked(Opt o) { return !o.set || (o.v >= 0 && o.v < MAX_VALUE) ? 0 : -1; }

/* _positive(): a count LiteLLM adds; 0 = none. Declines a count that is not a whole number. */
static int positive(const Val *v, int64_t *out) {
    *out = 0;
    if (v->t == V_INT) {
        if (v->i > 0) *out = v->i;
        return 0;
    }
    if (v->t == V_FLOAT) {
        if (!(v->d > 0)) return 0;
        if (v->d != floor(v->d) || v->d > 9007199254740992.0) return -1;
        *out = (int64_t)v->d;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Raw label values, interned: a slot key holds a 16-bit id for each value (0 for None), so that
 * it takes a few dozen bytes whatever the values' lengths, and many keys fit in the caches.
 * Equal ids are equal bytes: the table compares them in full (the hash only finds them).
 */
#define MAX_STRINGS 32767         /* ids; then all keys are forgotten and numbering starts again */
#define STRING_SLOTS (1u << 16)   /* open addressing, at most half full */
#define MAX_ARENA ((uint32_t)2 << 20) /* their bytes, at most */
#define KEY_VALUES 32             /* values in a key, at most */
#define KEY_BYTES 8192            /* their bytes, at most: a longer key's line goes the Python way */

typedef struct {
    uint16_t *slots; /* STRING_SLOTS: 0 free, else an id */
    uint64_t *hash;  /* by id - 1 */
    uint32_t *off, *len;
    char *arena;
    uint32_t used, cap;
    uint32_t count;
    uint64_t seed;
} Strings;

static uint64_t hash_bytes(uint64_t seed, const char *p, Py_ssize_t n) {
    uint64_t h = seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull);
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    memcpy(&w, p, (size_t)n);
    h = (h ^ w) * 0x94D049BB133111EBull;
    return h ^ (h >> 29);
}

static int strings_init(Strings *S, uint64_t seed) {
    S->slots = PyMem_Calloc(STRING_SLOTS, sizeof *S->slots);
    S->hash = PyMem_Calloc(MAX_STRINGS, sizeof *S->hash);
    S->off = PyMem_Calloc(MAX_STRINGS, sizeof *S->off);
    S->len = PyMem_Calloc(MAX_STRINGS, sizeof *S->len);
    S->seed = seed;
    if (S->slots == NULL || S->hash == NULL || S->off == NULL || S->len == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void strings_free(Strings *S) {
    PyMem_Free(S->slots);
    PyMem_Free(S->hash);
    PyMem_Free(S->off);
    PyMem_Free(S->len);
    PyMem_Free(S->arena);
}

static void strings_clear(Strings *S) {
    if (S->count) memset(S->slots, 0, STRING_SLOTS * sizeof *S->slots);
    S->count = 0;
    S->used = 0;
}

/* Whether a key (KEY_VALUES values, KEY_BYTES bytes) surely fits: then strings_id cannot fail. */
static int strings_room(const Strings *S) {
    return S->count + KEY_VALUES <= MAX_STRINGS && S->used + KEY_BYTES <= MAX_ARENA;
}

/* The id of these bytes (added if new), or 0 when out of memory (with an exception set). */
static uint16_t strings_id(Strings *S, const char *p, Py_ssize_t n) {
    uint64_t h = hash_bytes(S->seed, p, n);
    uint32_t i = (uint32_t)h & (STRING_SLOTS - 1);
    for (uint16_t id; (id = S->slots[i]) != 0; i = (i + 1) & (STRING_SLOTS - 1))
        if (S->hash[id - 1] == h && S->len[id - 1] == (uint32_t)n && memcmp(S->arena + S->off[id - 1], p, (size_t)n) == 0)
            return id;
    if (S->arena == NULL || S->used + (uint32_t)n > S->cap) {
        uint32_t cap = S->cap ? S->cap : 65536;
        while (cap < S->used + (uint32_t)n) cap *= 2;
        char *arena = PyMem_Realloc(S->arena, cap);
        if (arena == NULL) {
            PyErr_NoMemory();
            return 0;
        }
        S->arena = arena;
        S->cap = cap;
    }
    memcpy(S->arena + S->used, p, (size_t)n);
    uint16_t id = (uint16_t)++S->count;
    S->hash[id - 1] = h;
    S->off[id - 1] = S->used;
    S->len[id - 1] = (uint32_t)n;
    S->used += (uint32_t)n;
    S->slots[i] = id;
    return id;
}

/* ---------------------------------------------------------------------------------------------
 * The Loop object
 */
typedef struct {
    PyObject_HEAD
    PyObject *agg, *parse, *add, *payload_slot, *failure_slot, *compact_slot, *second, *histogram, *success, *failure,
        *lines_type;
    int h_first;           /* accumulator slot of the first histogram */
    int n_hist;
    double *bounds[8];
    int n_bounds[8];
    double max_time;
    Py_ssize_t max_line;
    int end_user_label;
    Strings strings;       /* the raw label values of the keys below */
    PyObject *cache;       /* key (raw label values' ids) -> (acc, stats.__dict__ or None, folded, state key) */
    PyObject *folded;      /* the same, for label sets folded into overflow series */
    PyObject *shared;      /* the entries of `folded`, one for each (acc, stats, state key) */
    PyObject *state_keys;  /* deployment state keys, shared */
    Py_ssize_t max_cached, max_state;
    PyObject *generation;
    char second_text[19];  /* the last naive second of a compact record, and its epoch */
    double second_base;
    int second_ok;
    /* per feed */
    struct Pend **pend;    /* additions waiting (see Pend): open addressing by (acc, stats), at most half full */
    size_t pend_cap, pend_used;
    struct Pend *pend_first, **pend_last; /* the same, in the order they were made */
    struct StateWrite *writes; /* deployment state writes waiting (see StateWrite): open addressing */
    size_t writes_cap, writes_used;
    uint64_t writes_seq;
    /* per feed */
    PyObject *state, *state_records, *dropped_kinds, *max_series;
    Py_ssize_t records;
    int64_t dropped[2];    /* records folded into overflow series: failures, successes */
    double newest, oldest;
    int have_times;
} Loop;

static PyObject *s_counts, *s_sum_exact, *s_requests, *s_failures, *s_prompt_tokens, *s_completion_tokens,
    *s_spend_exact, *s_latency, *s_ttft, *s_records, *s_newest_time, *s_oldest_time, *s_state, *s_state_records,
    *s_dropped_kinds, *s_max_series, *s_generation, *s_set_state, *s_dict, *i_one, *i_sketch_zero;


static int add_to(PyObject *list, Py_ssize_t i, PyObject *n) {
    PyObject *sum = PyNumber_Add(PyList_GET_ITEM(list, i), n);
    if (sum == NULL) return -1;
    PyList_SetItem(list, i, sum);
    return 0;
}

static int add_int(PyObject *list, Py_ssize_t i, int64_t v) {
    PyObject *n = PyLong_FromLongLong(v);
    if (n == NULL) return -1;
    int r = add_to(list, i, n);
    Py_DECREF(n);
    return r;
}

static int dict_add(PyObject *d, PyObject *key, PyObject *n) { /* d[key] = d.get(key, 0) + n */
    PyObject *have = PyDict_GetItemWithError(d, key);
    if (have == NULL && PyErr_Occurred()) return -1;
    PyObject *sum = have == NULL ? Py_NewRef(n) : PyNumber_Add(have, n);
    if (sum == NULL) return -1;
    int r = PyDict_SetItem(d, key, sum);
    Py_DECREF(sum);
    return r;
}

static int attr_add(PyObject *obj, PyObject *name, PyObject *n) {
    PyObject *have = PyObject_GetAttr(obj, name);
    if (have == NULL) return -1;
    PyObject *sum = PyNumber_Add(have, n);
    Py_DECREF(have);
    if (sum == NULL) return -1;
    int r = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return r;
}

/* aggregate.sketch_add */
static int sketch_add(PyObject *stats, PyObject *name, double value) {
    PyObject *sketch = PyDict_GetItemWithError(stats, name);
    if (sketch == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "ModelStats without a sketch");
        return -1;
    }
    PyObject *key = value > 0 ? PyLong_FromDouble(floor(log(value) * 50.0)) : Py_NewRef(i_sketch_zero);
    if (key == NULL) return -1;
    int r = dict_add(sketch, key, i_one);
    Py_DECREF(key);
    return r;
}

static int stats_add_int(PyObject *stats, PyObject *name, int64_t v) {
    PyObject *n = PyLong_FromLongLong(v);
    if (n == NULL) return -1;
    int r = dict_add(stats, name, n);
    Py_DECREF(n);
    return r;
}

/* Deployment state writes (Aggregator.set_state) of keys already in the state wait here, per key
 * object: the last value, how many writes, and when the last was. They are written in that order
 * (each key re-inserted last, its records counted) before anything else writes to the state: a new
 * key, a line that goes the Python way, the end of the feed. The state's order and values are then
 * as if each had been written at once. */
typedef struct StateWrite {
    PyObject *key; /* strong; NULL: free */
    long value;
    int64_t count;
    uint64_t seq;
} StateWrite;

static size_t ptr_mix(const void *a, const void *b) {
    uint64_t x = ((uint64_t)(uintptr_t)a >> 4) * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)(uintptr_t)b;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    return (size_t)(x ^ (x >> 31));
}

static int seq_order(const void *a, const void *b) {
    uint64_t x = (*(StateWrite *const *)a)->seq, y = (*(StateWrite *const *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Write the waiting state writes (all of them, even after a failure) and empty the table. */
static int state_flush(Loop *L) {
    if (L->writes_used == 0) return 0;
    StateWrite **order = PyMem_Malloc(sizeof *order * L->writes_used);
    int r = order == NULL ? (PyErr_NoMemory(), -1) : 0;
    size_t n = 0;
    for (size_t i = 0; i < L->writes_cap; i++)
        if (L->writes[i].key != NULL && order != NULL) order[n++] = &L->writes[i];
    if (order != NULL) qsort(order, n, sizeof *order, seq_order);
    for (size_t i = 0; i < n && r == 0; i++) { /* Aggregator.set_state of a key already there */
        StateWrite *w = order[i];
        PyObject *v = PyLong_FromLong(w->value);
        r = v == NULL ? -1 : PyDict_DelItem(L->state, w->key);
        if (r == 0 && L->state_records != Py_None) r = stats_add_int(L->state_records, w->key, w->count);
        if (r == 0) r = PyDict_SetItem(L->state, w->key, v);
        Py_XDECREF(v);
    }
    PyMem_Free(order);
    for (size_t i = 0; i < L->writes_cap; i++) Py_CLEAR(L->writes[i].key);
    L->writes_used = 0;
    return r;
}

static size_t key_slot(const StateWrite *table, size_t cap, const PyObject *key) {
    size_t mask = cap - 1, i = ptr_mix(key, NULL) & mask;
    while (table[i].key != NULL && table[i].key != key) i = (i + 1) & mask;
    return i;
}

/* Aggregator.set_state: a key already in the state waits (see StateWrite); a new one is written
 * at once after those waiting, or by the Python method when the state is full. */
static int set_state(Loop *L, PyObject *key, long value) {
    size_t i = key_slot(L->writes, L->writes_cap, key);
    StateWrite *w = &L->writes[i];
    if (w->key == NULL) {
        PyObject *have = PyDict_GetItemWithError(L->state, key);
        if (have == NULL && PyErr_Occurred()) return -1;
        if (have == NULL) { /* a new key: after those waiting */
            if (state_flush(L)) return -1;
            PyObject *v = PyLong_FromLong(value);
            if (v == NULL) return -1;
            int r;
            if (PyDict_GET_SIZE(L->state) < L->max_state) {
                r = L->state_records != Py_None ? dict_add(L->state_records, key, i_one) : 0;
                if (r == 0) r = PyDict_SetItem(L->state, key, v);
            } else {
                PyObject *res = PyObject_CallMethodObjArgs(L->agg, s_set_state, key, v, NULL);
                r = res == NULL ? -1 : 0;
                Py_XDECREF(res);
            }
            Py_DECREF(v);
            return r;
        }
        if ((L->writes_used + 1) * 2 > L->writes_cap) { /* grow, at most half full */
            size_t cap = L->writes_cap * 2;
            StateWrite *table = PyMem_Calloc(cap, sizeof *table);
            if (table == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            for (size_t j = 0; j < L->writes_cap; j++)
                if (L->writes[j].key != NULL) table[key_slot(table, cap, L->writes[j].key)] = L->writes[j];
            PyMem_Free(L->writes);
            L->writes = table;
            L->writes_cap = cap;
            w = &L->writes[key_slot(table, cap, key)];
        }
        w->key = Py_NewRef(key);
        w->count = 0;
        L->writes_used++;
    }
    w->value = value;
    w->count++;
    w->seq = ++L->writes_seq;
    return 0;
}

/* What a record adds; counts are 0 when absent (the event's None or 0 alike, as the Python adds
 * them under `if value:`). */
typedef struct {
    int success;
    double time;
    double spend;
    int64_t prompt, completion, total, cached, cache_creation, audio_in, reasoning, audio_out;
    int64_t provider_read, provider_creation, images;
    double video;
    int cache_hit; /* -1 None, 0 False, 1 True */
    Opt hist[6];   /* total, api, ttft, queue, overhead, per token */
} Adds;

/* Exact sums, as aggregate.exact() keeps them: integers in units of 2**-200. A value below
 * MAX_VALUE (1e200 < 2**665) is below 2**865 in these units: 15 limbs of two's complement hold its
 * sum over up to 2**94 additions. */
#define LIMBS 15
typedef struct {
    uint64_t l[LIMBS];
} Exact;

/* limbs (n of them, two's complement) += int(v * 2.0**bits), exactly (int() truncates toward zero) */
static void limbs_add(uint64_t *l, int n, int bits, double v) {
    if (v == 0.0) return;
    int e;
    double f = frexp(fabs(v), &e); /* |v| = f * 2**e, f in [0.5, 1) */
    uint64_t m = (uint64_t)ldexp(f, 53);
    int k = e - 53 + bits; /* |v| * 2**bits = m * 2**k */
    if (k < 0) {
        m = k <= -64 ? 0 : m >> -k;
        k = 0;
    }
    if (m == 0) return;
    int li = k / 64, sh = k % 64;
    uint64_t part[2] = {m << sh, sh ? m >> (64 - sh) : 0};
    if (v > 0) {
        unsigned __int128 carry = 0;
        for (int i = li; i < n && (i < li + 2 || carry); i++) {
            unsigned __int128 t = (unsigned __int128)l[i] + (i < li + 2 ? part[i - li] : 0) + carry;
            l[i] = (uint64_t)t;
            carry = t >> 64;
        }
    } else {
        uint64_t borrow = 0;
        for (int i = li; i < n && (i < li + 2 || borrow); i++) {
            uint64_t sub = i < li + 2 ? part[i - li] : 0;
            uint64_t have = l[i];
            uint64_t r = have - sub - borrow;
            borrow = (have < sub) || (have - sub < borrow);
            l[i] = r;
        }
    }
}

static inline void exact_add(Exact *x, double v) { limbs_add(x->l, LIMBS, 200, v); }

static PyObject *exact_long(const Exact *x) {
    unsigned char bytes[LIMBS * 8];
    uint64_t sign = x->l[LIMBS - 1] >> 63 ? UINT64_MAX : 0;
    int n = LIMBS; /* the limbs below the sign extension, and one for the sign */
    while (n > 1 && x->l[n - 1] == sign && (x->l[n - 2] >> 63) == (sign & 1)) n--;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 8; b++) bytes[i * 8 + b] = (unsigned char)(x->l[i] >> (8 * b));
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromNativeBytes(bytes, (size_t)n * 8, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#else
    return _PyLong_FromByteArray(bytes, (size_t)n * 8, 1, 1);
#endif
}

/* Small exact sums, for what waits in C: int(v * 2**113) for 2**-60 <= |v| < 2**60 (every bit of
 * such a double is a multiple of 2**-112, so nothing is cut), in three limbs of two's complement:
 * below 2**173 each, room for 2**17 additions (a pending entry takes 65,535 records at most). Other
 * values are written at once (`now`). */
#define SMALL_LIMBS 3
#define SMALL_BITS 113
typedef struct {
    uint64_t l[SMALL_LIMBS];
} Small;

static inline int small_fits(double v) {
    double a = fabs(v);
    return a == 0.0 || (a >= 0x1p-60 && a < 0x1p60);
}

static inline void small_add(Small *x, double v) { limbs_add(x->l, SMALL_LIMBS, SMALL_BITS, v); }

/* *out = x in aggregate.exact's unit (times 2**87); 0 when x is 0 */
static int small_exact(const Small *x, Exact *out) {
    int zero = 1;
    for (int i = 0; i < SMALL_LIMBS; i++) zero &= x->l[i] == 0;
    if (zero) return 0;
    const int shift = 200 - SMALL_BITS, li = shift / 64, sh = shift % 64;
    uint64_t sign = x->l[SMALL_LIMBS - 1] >> 63 ? UINT64_MAX : 0;
    for (int i = 0; i < LIMBS; i++) {
        int j = i - li; /* out limb i takes bits of limbs j and j - 1 */
        uint64_t hi = j < 0 ? 0 : j < SMALL_LIMBS ? x->l[j] : sign;
        uint64_t lo = j - 1 < 0 ? 0 : j - 1 < SMALL_LIMBS ? x->l[j - 1] : sign;
        out->l[i] = sh ? (hi << sh) | (lo >> (64 - sh)) : hi;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Additions waiting in C. What the records of a slot add is kept here, per (accumulator, view
 * row), and written into the aggregator's objects only when someone reads them (Aggregator.settle
 * calls Loop.settle) or when a counter here would overflow. Everything here is an integer: the
 * order of additions does not change the result, so the lines that go the Python way in between
 * (adding to the same objects) need not wait, nor the deployment state, the view's sketches, the
 * record count and times, which are written at once or at the end of each feed. An accumulator
 * list of zeros stands for the rest meanwhile (its histograms made when written: _observe).
 */
/* the accumulator's integer slots (aggregate.SLOT) but 0 (records) and 1 (spend, a Small): the
 * counters before the histograms, then those after (at h_first + n_hist), as indexes */
#define MAX_INTS 16
static inline int int_slot(const Loop *L, int index) { return index < L->h_first ? index : index + L->n_hist; }
typedef struct {
    Small sum;
    uint16_t counts[]; /* per bucket, the last for +Inf (at most records: see apply) */
} PHist;

typedef struct Pend {
    struct Pend *next;      /* the one made after it */
    PyObject *list, *stats; /* strong: the accumulator, and the view row's __dict__ or None */
    int success;
    uint32_t records; /* acc slot 0's addition, and the view row's requests: below 2**16 */
    uint32_t acc_mask; /* the integer slots touched, by index (int_slot) */
    int64_t acc[MAX_INTS];
    Small spend, video;
    PHist *hist[6];
} Pend;


/* aggregate._observe's histogram (made at the first observation), borrowed; NULL with an exception */
static PyObject *histogram_of(Loop *L, PyObject *acc, int k) {
    int slot = L->h_first + k;
    PyObject *h = PyList_GET_ITEM(acc, slot);
    if (h != Py_None) return h;
    PyObject *counts = PyList_New(L->n_bounds[k] + 1);
    if (counts == NULL) return NULL;
    for (int i = 0; i <= L->n_bounds[k]; i++) PyList_SET_ITEM(counts, i, PyLong_FromLong(0));
    h = PyObject_CallOneArg(L->histogram, counts);
    Py_DECREF(counts);
    if (h == NULL) return NULL;
    PyList_SetItem(acc, slot, h);
    return h;
}

static int add_long(PyObject *target, PyObject *name_or_list, Py_ssize_t i, const Exact *x, int dict) {
    PyObject *n = exact_long(x);
    if (n == NULL) return -1;
    int r = dict ? dict_add(target, name_or_list, n) : add_to(target, i, n);
    Py_DECREF(n);
    return r;
}

/* Write a pending entry's additions into the aggregator's objects, and zero it. */
static int pend_write(Loop *L, Pend *p) {
    PyObject *acc = p->list, *stats = p->stats;
    int r = p->records ? add_int(acc, 0, p->records) : 0;
    for (int i = 2; r == 0 && i < MAX_INTS; i++)
        if (p->acc_mask & (1u << i)) r = add_int(acc, int_slot(L, i), p->acc[i]);
    Exact spend, video;
    int has_spend = small_exact(&p->spend, &spend), more_at = L->h_first + L->n_hist;
    if (r == 0 && has_spend) r = add_long(acc, NULL, 1, &spend, 0);
    if (r == 0 && small_exact(&p->video, &video)) r = add_long(acc, NULL, more_at + 3, &video, 0);
    for (int k = 0; r == 0 && k < L->n_hist; k++) {
        PHist *ph = p->hist[k];
        if (ph == NULL) continue;
        PyObject *h = histogram_of(L, acc, k);
        PyObject *counts = h == NULL ? NULL : PyObject_GetAttr(h, s_counts);
        if (counts == NULL) {
            r = -1;
            break;
        }
        for (int i = 0; r == 0 && i <= L->n_bounds[k]; i++)
            if (ph->counts[i]) r = add_int(counts, i, ph->counts[i]);
        Py_DECREF(counts);
        Exact sum;
        if (r == 0 && small_exact(&ph->sum, &sum)) {
            PyObject *n = exact_long(&sum);
            r = n == NULL ? -1 : attr_add(h, s_sum_exact, n);
            Py_XDECREF(n);
        }
    }
    if (r == 0 && stats != Py_None) { /* Aggregator._view (a record's additions may straddle a write) */
        if (p->records) r = stats_add_int(stats, s_requests, p->records);
        if (r == 0 && p->records && !p->success) r = stats_add_int(stats, s_failures, p->records);
        if (r == 0 && p->success) {
            if (p->acc_mask & (1u << 3)) r = stats_add_int(stats, s_prompt_tokens, p->acc[3]);
            if (r == 0 && p->acc_mask & (1u << 4)) r = stats_add_int(stats, s_completion_tokens, p->acc[4]);
            if (r == 0 && has_spend) r = add_long(stats, s_spend_exact, 0, &spend, 1);
        }
    }
    for (int k = 0; k < 6; k++) PyMem_Free(p->hist[k]);
    memset(&p->records, 0, sizeof *p - offsetof(Pend, records));
    return r;
}

static void pend_free(Pend *p) {
    Py_DECREF(p->list);
    Py_DECREF(p->stats);
    for (int k = 0; k < 6; k++) PyMem_Free(p->hist[k]);
    PyMem_Free(p);
}

/* Write every pending entry (all of them, even after a failure) and empty the table: in the order
 * they were made, so that the allocator's pools empty one after the other, for the objects written. */
static int settle(Loop *L) {
    int r = 0;
    for (Pend *p = L->pend_first, *next; p != NULL; p = next) {
        next = p->next;
        if (pend_write(L, p)) r = -1;
        pend_free(p);
    }
    L->pend_first = NULL;
    L->pend_last = &L->pend_first;
    memset(L->pend, 0, sizeof *L->pend * L->pend_cap);
    L->pend_used = 0;
    return r;
}

#define PEND_MIN 1024

/* The pending entry of (acc, stats), new if need be; NULL with an exception set */
static Pend *pend_for(Loop *L, PyObject *acc, PyObject *stats, int success) {
    size_t mask = L->pend_cap - 1, i = ptr_mix(acc, stats) & mask;
    for (Pend *p; (p = L->pend[i]) != NULL; i = (i + 1) & mask)
        if (p->list == acc && p->stats == stats) return p;
    if (L->pend_used >= (size_t)L->max_cached && settle(L)) return NULL; /* as many as slots cached */
    if ((L->pend_used + 1) * 2 > L->pend_cap) { /* grow, at most half full */
        size_t cap = L->pend_cap * 2;
        Pend **table = PyMem_Calloc(cap, sizeof *table);
        if (table == NULL) return (Pend *)PyErr_NoMemory();
        for (size_t j = 0; j < L->pend_cap; j++) {
            Pend *q = L->pend[j];
            if (q == NULL) continue;
            size_t k = ptr_mix(q->list, q->stats) & (cap - 1);
            while (table[k] != NULL) k = (k + 1) & (cap - 1);
            table[k] = q;
        }
        PyMem_Free(L->pend);
        L->pend = table;
        L->pend_cap = cap;
        return pend_for(L, acc, stats, success);
    }
    Pend *p = PyMem_Calloc(1, sizeof *p);
    if (p == NULL) return (Pend *)PyErr_NoMemory();
    p->list = Py_NewRef(acc);
    p->stats = Py_NewRef(stats);
    p->success = success;
    *L->pend_last = p;
    L->pend_last = &p->next;
    L->pend[i] = p;
    L->pend_used++;
    return p;
}

/* acc slot += n (n >= 0); a counter about to overflow is written first */
static inline int pend_add(Loop *L, Pend *p, int slot, int64_t n) {
    int i = slot < L->h_first ? slot : slot - L->n_hist;
    int64_t sum;
    if (__builtin_add_overflow(p->acc[i], n, &sum)) { /* write everything, start again */
        if (pend_write(L, p)) return -1;
        sum = n;
    }
    p->acc[i] = sum;
    p->acc_mask |= 1u << i;
    return 0;
}

/* A value out of the small sums' range, written at once: into acc slot `slot` (and the view row's
 * spend when `spend`), or into histogram k's sum when slot < 0. */
static int now(Loop *L, Pend *p, int slot, int k, double v, int spend) {
    Exact x = {{0}};
    exact_add(&x, v);
    PyObject *n = exact_long(&x);
    if (n == NULL) return -1;
    int r;
    if (slot >= 0) {
        r = add_to(p->list, slot, n);
        if (r == 0 && spend && p->stats != Py_None) r = dict_add(p->stats, s_spend_exact, n);
    } else {
        PyObject *h = histogram_of(L, p->list, k);
        r = h == NULL ? -1 : attr_add(h, s_sum_exact, n);
    }
    Py_DECREF(n);
    return r;
}

/* Aggregator._request for a cached slot: the additions wait in C (see Pend); the deployment state,
 * the view's sketches, the records folded, the record count and times are written at once or at
 * the end of the feed. */
static int apply(Loop *L, PyObject *entry, long state_value, const Adds *a) {
    PyObject *acc = PyTuple_GET_ITEM(entry, 0), *stats = PyTuple_GET_ITEM(entry, 1);
    PyObject *folded = PyTuple_GET_ITEM(entry, 2), *state_key = PyTuple_GET_ITEM(entry, 3);
    double t = a->time;
    if (t != 0.0) {
        if (!L->have_times) {
            L->newest = L->oldest = t;
            L->have_times = 1;
        } else {
            if (t > L->newest) L->newest = t;
            if (t < L->oldest) L->oldest = t;
        }
    }
    L->records++;
    if (folded == Py_True) L->dropped[a->success]++;
    if (state_key != Py_None && set_state(L, state_key, state_value)) return -1;
    Pend *p = pend_for(L, acc, stats, a->success);
    if (p == NULL) return -1;
    if (p->records == UINT16_MAX && pend_write(L, p)) return -1; /* uint16 bucket counts */
    p->records++;
    if (!a->success) return 0;
    if (a->spend != 0.0) {
        if (small_fits(a->spend))
            small_add(&p->spend, a->spend);
        else if (now(L, p, 1, 0, a->spend, 1))
            return -1;
    }
#define ADD(slot, n)                          \
    if (pend_add(L, p, (slot), (n))) return -1
    ADD(2, a->total);
    ADD(3, a->prompt);
    ADD(4, a->completion);
    const int64_t more[] = {a->cached, a->cache_creation, a->audio_in, a->reasoning, a->audio_out};
    for (int i = 0; i < 5; i++)
        if (more[i]) ADD(5 + i, more[i]);
    if (a->cache_hit == 1) {
        ADD(10, 1);
        if (a->total > 0) ADD(12, a->total);
    } else if (a->cache_hit == 0) {
        ADD(11, 1);
    }
    int more_at = L->h_first + L->n_hist;
    if (a->provider_read) ADD(more_at, a->provider_read);
    if (a->provider_creation) ADD(more_at + 1, a->provider_creation);
    if (a->images) ADD(more_at + 2, a->images);
#undef ADD
    if (a->video != 0.0) {
        if (small_fits(a->video))
            small_add(&p->video, a->video);
        else if (now(L, p, more_at + 3, 0, a->video, 0))
            return -1;
    }
    for (int k = 0; k < 6; k++) {
        if (!a->hist[k].set) continue;
        double value = a->hist[k].v;
        const double *bd = L->bounds[k];
        int lo = 0, hi = L->n_bounds[k];
        while (lo < hi) { /* bisect_left */
            int mid = (lo + hi) / 2;
            if (bd[mid] < value)
                lo = mid + 1;
            else
                hi = mid;
        }
        PHist *ph = p->hist[k];
        if (ph == NULL) {
            ph = p->hist[k] = PyMem_Calloc(1, sizeof *ph + sizeof(uint16_t) * (size_t)(L->n_bounds[k] + 1));
            if (ph == NULL) {
                PyErr_NoMemory();
                return -1;
            }
        }
        ph->counts[lo]++;
        if (small_fits(value))
            small_add(&ph->sum, value);
        else if (now(L, p, -1, k, value, 0))
            return -1;
    }
    if (stats != Py_None) {
        if (a->hist[0].set && sketch_add(stats, s_latency, a->hist[0].v)) return -1;
        if (a->hist[2].set && sketch_add(stats, s_ttft, a->hist[2].v)) return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Slot keys: the raw values that decide a slot, each as its bytes and a 0x01 end, or 0x00 for None
 */
typedef struct {
    unsigned char buf[1 + 2 * KEY_VALUES];
    Py_ssize_t n, bytes;
    int overflow; /* too long: the line goes the Python way */
} Key;

static void forget(Loop *L);

/* A key of this kind (one byte); the string table is emptied first unless it has room for it. */
static void key_start(Loop *L, Key *k, char kind) {
    if (!strings_room(&L->strings)) forget(L);
    k->buf[0] = (unsigned char)kind;
    k->n = 1;
    k->bytes = 0;
    k->overflow = 0;
}

/* 0, or -1 with an exception set */
static inline int key_put(Loop *L, Key *k, Str s) {
    uint16_t id = 0;
    if (k->overflow) return 0;
    if (k->n + 2 > (Py_ssize_t)sizeof k->buf || (s.p != NULL && k->bytes + s.n > KEY_BYTES)) {
        k->overflow = 1;
        return 0;
    }
    if (s.p != NULL) {
        k->bytes += s.n;
        id = strings_id(&L->strings, s.p, s.n);
        if (id == 0) return -1;
    }
    k->buf[k->n++] = (unsigned char)(id & 0xFF);
    k->buf[k->n++] = (unsigned char)(id >> 8);
    return 0;
}

static PyObject *py_str(Str s) {
    if (s.p == NULL) Py_RETURN_NONE;
    return PyUnicode_DecodeASCII(s.p, s.n, NULL);
}

/* events.redact_api_base: a query becomes "?REDACTED", the host's user info "REDACTED@". The label
 * values made in Python get it there (slp.labels_200); the deployment state's are made here. */
static PyObject *py_api_base(Str s) {
    if (s.p == NULL || (memchr(s.p, '?', (size_t)s.n) == NULL && memchr(s.p, '@', (size_t)s.n) == NULL))
        return py_str(s);
    char *buf = PyMem_Malloc((size_t)s.n + 32); /* a miss's work: the label set is new */
    if (buf == NULL) return PyErr_NoMemory();
    const char *q = memchr(s.p, '?', (size_t)s.n);
    Py_ssize_t base_n = q != NULL ? q - s.p : s.n, rest = 0;
    for (Py_ssize_t i = 0; i + 3 <= base_n; i++) /* base.partition("://") */
        if (memcmp(s.p + i, "://", 3) == 0) {
            rest = i + 3;
            break;
        }
    const char *slash = memchr(s.p + rest, '/', (size_t)(base_n - rest));
    Py_ssize_t host_end = slash != NULL ? slash - s.p : base_n, at = -1;
    for (Py_ssize_t i = host_end - 1; i >= rest && at < 0; i--) /* host.rpartition("@") */
        if (s.p[i] == '@') at = i;
    Py_ssize_t n = 0;
    memcpy(buf, s.p, (size_t)rest);
    n = rest;
    if (at >= 0) {
        memcpy(buf + n, "REDACTED@", 9);
        n += 9;
        memcpy(buf + n, s.p + at + 1, (size_t)(base_n - at - 1));
        n += base_n - at - 1;
    } else {
        memcpy(buf + n, s.p + rest, (size_t)(base_n - rest));
        n += base_n - rest;
    }
    if (q != NULL) {
        memcpy(buf + n, "?REDACTED", 9);
        n += 9;
    }
    PyObject *text = PyUnicode_DecodeASCII(buf, n, NULL);
    PyMem_Free(buf);
    return text;
}

static PyObject *state_tuple(const Str st[4]) {
    PyObject *t = PyTuple_New(4);
    if (t == NULL) return NULL;
    for (int i = 0; i < 4; i++) {
        PyObject *v = i == 2 ? py_api_base(st[i]) : py_str(st[i]); /* (name, model_id, api_base, provider) */
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

#define MAX_FOLDED 32768 /* keys of label sets folded into overflow series kept (each ~0.15 KB: 5 MB) */

/* The cache entry (borrowed) for `key`, or a new one from `make`, or NULL with an exception set.
 * `make` gives a slot (accumulator, view row, folded) and the deployment state key (None: no state
 * write), or a slot alone: the key is then made of `st`. */
static PyObject *entry_for(Loop *L, Key *key, PyObject *(*make)(Loop *, void *), void *ctx, const Str st[4]) {
    PyObject *kb = PyBytes_FromStringAndSize((const char *)key->buf, key->n);
    if (kb == NULL) return NULL;
    PyObject *entry = PyDict_GetItemWithError(L->cache, kb);
    if (entry == NULL && !PyErr_Occurred()) entry = PyDict_GetItemWithError(L->folded, kb);
    if (entry != NULL || PyErr_Occurred()) {
        Py_DECREF(kb);
        return entry;
    }
    PyObject *slot = make(L, ctx);
    if (slot == NULL) {
        Py_DECREF(kb);
        return NULL;
    }
    PyObject *acc, *stats, *folded;
    Py_ssize_t size = PyTuple_Check(slot) ? PyTuple_GET_SIZE(slot) : 0;
    if ((size != 3 && size != 4) || !PyList_Check(acc = PyTuple_GET_ITEM(slot, 0)) ||
        PyList_GET_SIZE(acc) < L->h_first + L->n_hist + 4 ||
        (size == 3 && st == NULL) ||
        (size == 4 && PyTuple_GET_ITEM(slot, 3) != Py_None && !PyTuple_Check(PyTuple_GET_ITEM(slot, 3)))) {
        PyErr_SetString(PyExc_TypeError, "a slot is (accumulator list, ModelStats or None, folded[, state key or None])");
        Py_DECREF(slot);
        Py_DECREF(kb);
        return NULL;
    }
    stats = PyTuple_GET_ITEM(slot, 1);
    folded = PyTuple_GET_ITEM(slot, 2);
    PyObject *stats_dict = stats == Py_None ? Py_NewRef(Py_None) : PyObject_GetAttr(stats, s_dict);
    PyObject *sk = size == 4 ? Py_NewRef(PyTuple_GET_ITEM(slot, 3)) : state_tuple(st);
    if (sk != NULL && sk != Py_None) { /* one tuple per deployment, shared by its label sets' entries */
        if (PyDict_GET_SIZE(L->state_keys) >= MAX_FOLDED) PyDict_Clear(L->state_keys);
        PyObject *shared = PyDict_SetDefault(L->state_keys, sk, sk);
        Py_XINCREF(shared);
        Py_SETREF(sk, shared);
    }
    if (stats_dict == NULL || sk == NULL) {
        Py_XDECREF(stats_dict);
        Py_XDECREF(sk);
        Py_DECREF(slot);
        Py_DECREF(kb);
        return NULL;
    }
    int is_folded = PyObject_IsTrue(folded);
    entry = PyTuple_Pack(4, acc, stats_dict, is_folded ? Py_True : Py_False, sk);
    if (entry != NULL && is_folded) { /* many label sets fold into one series: they share an entry */
        const void *parts[3] = {acc, stats_dict, sk}; /* alive while the entry is */
        PyObject *pk = PyBytes_FromStringAndSize((const char *)parts, sizeof parts);
        PyObject *shared = pk == NULL ? NULL : PyDict_SetDefault(L->shared, pk, entry);
        Py_XINCREF(shared);
        Py_XDECREF(pk);
        Py_SETREF(entry, shared);
    }
    Py_DECREF(stats_dict);
    Py_DECREF(sk);
    Py_DECREF(slot);
    if (entry == NULL) {
        Py_DECREF(kb);
        return NULL;
    }
    /* as Aggregator._slots and _folded_slots: the slots of label sets with their own series stay
     * (their number is capped), a bounded few of those folded into overflow series */
    PyObject *cache = PyTuple_GET_ITEM(entry, 2) == Py_True ? L->folded : L->cache;
    if (PyDict_GET_SIZE(cache) >= (cache == L->folded ? MAX_FOLDED : L->max_cached)) {
        PyDict_Clear(cache);
        if (cache == L->folded) PyDict_Clear(L->shared);
    }
    int r = PyDict_SetItem(cache, kb, entry);
    Py_DECREF(kb);
    Py_DECREF(entry);
    return r ? NULL : entry; /* borrowed: the cache holds it */
}

/* ---------------------------------------------------------------------------------------------
 * Payloads (slp.event_from_payload: successes, and failures without the callback's facts)
 */
enum { A_REQUESTED = 18, A_PAYLOAD_ZERO_COST, A_PAYLOAD_N };                      /* payload_slot's */
enum { A_STATUS = 18, A_ERROR_CLASS, A_LLM_PROVIDER, A_FAILURE_ZERO_COST, A_FAILURE_N }; /* failure_slot's */

/* A slot maker's call: call((the 18 label values), the other strings...) */
typedef struct {
    PyObject *call;
    Str args[A_FAILURE_N]; /* the 18 label values (slp._labels' order), then the others */
    int n;
} SlotCall;

static PyObject *make_slot(Loop *L, void *vctx) {
    SlotCall *c = vctx;
    PyObject *args[A_FAILURE_N - 17] = {NULL};
    int k = 0;
    PyObject *values = args[k++] = PyTuple_New(18);
    for (int i = 0; values != NULL && i < 18; i++) {
        PyObject *v = py_str(c->args[i]);
        if (v == NULL) {
            Py_CLEAR(args[0]);
            break;
        }
        PyTuple_SET_ITEM(values, i, v);
    }
    PyObject *slot = NULL;
    if (args[0] != NULL) {
        for (; k < c->n - 17 && (args[k] = py_str(c->args[17 + k])) != NULL; k++) {}
        if (k == c->n - 17) slot = PyObject_Vectorcall(c->call, args, (size_t)k, NULL);
    }
    for (int i = 0; i < k; i++) Py_XDECREF(args[i]);
    return slot;
}

static Str strip_provider(Str model, Str provider) {
    if (truthy_str(model) && truthy_str(provider) && model.n > provider.n &&
        memcmp(model.p, provider.p, (size_t)provider.n) == 0 && model.p[provider.n] == '/') {
        model.p += provider.n + 1;
        model.n -= provider.n + 1;
    }
    return model;
}

static int raw_has_tier(const Val *v) {
    static const char needle[] = "\"service_tier\"";
    if (v->t != V_RAW) return 0;
    for (Py_ssize_t i = 0; i + (Py_ssize_t)sizeof needle - 1 <= v->n; i++)
        if (v->p[i] == '"' && memcmp(v->p + i, needle, sizeof needle - 1) == 0) return 1;
    return 0;
}

static Str zero_cost_reason(Rec *R, int pay, int zcd) {
    return AT(R, pay, P_ZERO_COST)->t == V_OBJ ? str_of(AT(R, zcd, 0)) : (Str){NULL, 0};
}

/* slp._failure for a payload without facts, its label values in c (slp.failure_labels makes its
 * label sets and state key in Python, once per distinct key): 1 taken, 0 declined, -1 error */
static int payload_failure(Loop *L, Rec *R, int pay, int zcd, SlotCall *c, double end_time) {
    char code_text[24];
    Str status = {NULL, 0}, error_class = {NULL, 0}, llm_provider = {NULL, 0};
    if (AT(R, pay, P_ERROR_INFO)->t == V_OBJ) {
        int ei = insts[pay].child[P_ERROR_INFO];
        const Val *code = AT(R, ei, 0);
        if (code->t == V_INT) { /* slp.error_status: str(error_code) */
            status.n = snprintf(code_text, sizeof code_text, "%lld", (long long)code->i);
            status.p = code_text;
        } else if (code->t == V_STR && code->n > 0) {
            status = str_of(code);
        }
        error_class = str_of(AT(R, ei, 1));
        llm_provider = str_of(AT(R, ei, 2));
    }
    c->args[A_STATUS] = status;
    c->args[A_ERROR_CLASS] = error_class;
    c->args[A_LLM_PROVIDER] = llm_provider;
    c->args[A_FAILURE_ZERO_COST] = zero_cost_reason(R, pay, zcd);
    Key key;
    key_start(L, &key, 'f');
    int r = 0;
    for (int i = 0; i < A_FAILURE_N; i++) r |= key_put(L, &key, c->args[i]);
    if (r) return -1;
    if (key.overflow) return 0;
    PyObject *entry = entry_for(L, &key, make_slot, c, NULL);
    if (entry == NULL) return -1;
    Adds a; /* a request counted, nothing else added */
    memset(&a, 0, sizeof a);
    a.time = end_time;
    return apply(L, entry, 1, &a) ? -1 : 1;
}

/* 1 taken, 0 declined, -1 error */
static int payload(Loop *L, Rec *R, int pay, int md, int usage, int ptd, int ctd, int hp, int zcd, int facts,
                   const Val *time) {
#define PV(f) AT(R, pay, f)
#define MV(f) AT(R, md, f)
#define FV(f) AT(R, facts, f)
    int with_facts = facts >= 0, failure = str_is(str_of(PV(P_STATUS)), "failure");
    if (failure && with_facts) return 0; /* the callback's facts of a failure: the Python way */
    if (with_facts && FV(F_SKIP)->t == V_TRUE) return 0;
    int has_md = PV(P_METADATA)->t == V_OBJ;
    Val none = {0};
#define MD(f) (has_md ? MV(f) : &none)
    Str provider = str_of(PV(P_PROVIDER));
    Str model = with_facts && is_set(FV(F_MODEL)) ? str_of(FV(F_MODEL)) : strip_provider(str_of(PV(P_MODEL)), provider);
    int has_usage = has_md && MV(M_USAGE)->t == V_OBJ;
    Str tier = {NULL, 0};
    if (with_facts) {
        tier = str_of(FV(F_TIER));
    } else { /* slp._service_tier: the raw response and model parameters only when they name one */
        if (raw_has_tier(PV(P_RESPONSE)) || raw_has_tier(PV(P_MODEL_PARAMETERS))) return 0;
        if (has_usage) {
            Str t = str_of(AT(R, usage, U_TIER));
            if (truthy_str(t)) tier = t;
        }
    }
    SlotCall c = {failure ? L->failure_slot : L->payload_slot, {{0}}, failure ? A_FAILURE_N : A_PAYLOAD_N};
    Str end_user = {NULL, 0};
    if (with_facts)
        end_user = str_of(FV(F_END_USER));
    else if (L->end_user_label)
        end_user = str_of(PV(P_END_USER));
    Str group = str_of(PV(P_GROUP));
    const Str values[18] = {end_user, str_of(MD(M_HASH)), str_of(MD(M_ALIAS)), group, str_of(MD(M_TEAM)),
                            str_of(MD(M_TEAM_ALIAS)), str_of(MD(M_USER)), str_of(MD(M_EMAIL)), str_of(MD(M_ORG)),
                            str_of(MD(M_ORG_ALIAS)), model, str_of(PV(P_MODEL_ID)), str_of(PV(P_API_BASE)), provider,
                            tier, str_of(MD(M_ROUTE)), str_of(MD(M_IP)), str_of(MD(M_AGENT))};
    memcpy(c.args, values, sizeof values);

    /* times as whole microseconds */
    Micros hook_start = {0}, hook_end = {0}, start, end, api_start = {0}, completion_start = {0}, m;
    if (with_facts && micros(FV(F_HOOK_START), &hook_start)) return 0;
    if (!hook_start.set && micros(PV(P_START), &hook_start)) return 0;
    if (with_facts && micros(FV(F_HOOK_END), &hook_end)) return 0;
    if (!hook_end.set && micros(PV(P_END), &hook_end)) return 0;
    double end_time;
    if (time != NULL && is_set(time))
        end_time = time->d;
    else
        end_time = is_set(PV(P_END)) ? PV(P_END)->d : 0.0;
    if (!(end_time >= 0.0 && end_time < L->max_time)) return 0;
    if (failure) return payload_failure(L, R, pay, zcd, &c, end_time);
    start = hook_start;
    end = hook_end;
    int stream; /* -1 None */
    Opt queue = {0};
    if (with_facts) {
        if (micros(FV(F_START), &m)) return 0;
        if (m.set) start = m;
        if (micros(FV(F_END), &m)) return 0;
        if (m.set) end = m;
        if (micros(FV(F_API_START), &api_start) || micros(FV(F_COMPLETION_START), &completion_start)) return 0;
        stream = FV(F_STREAM)->t == V_TRUE ? 1 : FV(F_STREAM)->t == V_FALSE ? 0 : -1;
        if (is_set(FV(F_QUEUE)) && FV(F_QUEUE)->d >= 0) {
            queue.set = 1;
            queue.v = FV(F_QUEUE)->d;
        }
    } else {
        if (PV(P_CACHE_HIT)->t != V_TRUE) api_start = hook_start;
        if (micros(PV(P_COMPLETION), &completion_start)) return 0;
        stream = PV(P_STREAM)->t == V_TRUE ? 1 : PV(P_STREAM)->t == V_FALSE ? 0 : -1;
    }
    Adds a;
    memset(&a, 0, sizeof a);
    a.success = 1;
    a.time = end_time;
    Opt total;
    if (seconds(start, end, &total)) return 0;
    if (total.set && queue.set) total.v += queue.v;
    int64_t completion_tokens = is_set(PV(P_COMPLETION_TOKENS)) ? PV(P_COMPLETION_TOKENS)->i : -1;
    Opt per_token = {0};
    if (completion_tokens > 0 && hook_start.set && hook_end.set) {
        int64_t us = 0;
        if (stream == 1 && completion_start.set) us = completion_start.us - hook_start.us;
        if (us == 0) us = hook_end.us - hook_start.us;
        if (us > (INT64_C(1) << 53) || us < -(INT64_C(1) << 53)) return 0;
        per_token.set = 1;
        per_token.v = ((double)us / 1e6) / (double)completion_tokens;
    }
    /* usage */
    int has_ptd = has_usage && AT(R, usage, U_PTD)->t == V_OBJ, has_ctd = has_usage && AT(R, usage, U_CTD)->t == V_OBJ;
    const Val *cache_write = &none;
    if (has_ptd) {
        if (AT(R, ptd, TD_WRITE)->t == V_INT)
            cache_write = AT(R, ptd, TD_WRITE);
        else if (AT(R, ptd, TD_CREATION)->t == V_INT)
            cache_write = AT(R, ptd, TD_CREATION);
    }
    if (has_ptd && (positive(AT(R, ptd, TD_CACHED), &a.cached) || positive(AT(R, ptd, TD_AUDIO), &a.audio_in)))
        return 0;
    if (positive(cache_write, &a.cache_creation)) return 0;
    if (has_ctd && (positive(AT(R, ctd, TD_REASONING), &a.reasoning) || positive(AT(R, ctd, TD_AUDIO), &a.audio_out)))
        return 0;
    if (has_usage) { /* slp._provider_cache_tokens: integers only */
        const Val *read = AT(R, usage, U_CACHE_READ);
        if (!is_set(read)) read = has_ptd ? AT(R, ptd, TD_CACHED) : &none;
        const Val *write = AT(R, usage, U_CACHE_CREATION);
        if (!is_set(write)) write = cache_write;
        if (read->t == V_INT && read->i > 0) a.provider_read = read->i;
        if (write->t == V_INT && write->i > 0) a.provider_creation = write->i;
        if (positive(AT(R, usage, U_IMAGES), &a.images)) return 0;
        const Val *video = AT(R, usage, U_VIDEO);
        if (is_set(video) && video->d > 0) {
            if (!(video->d < MAX_VALUE)) return 0;
            a.video = video->d;
        }
    }
    Opt overhead = {0};
    if (PV(P_HIDDEN)->t == V_OBJ) {
        const Val *o = AT(R, hp, 0);
        if (is_set(o) && o->d != 0.0) {
            overhead.set = 1;
            overhead.v = o->d / 1000;
        }
    }
    /* the proxy family's requested model, and the deployment state write */
    if (with_facts) {
        Str original = str_of(FV(F_ORIGINAL_GROUP));
        if (truthy_str(original) && !str_eq(original, group)) c.args[A_REQUESTED] = original;
    }
    Str st[4];
    int recorded_state = with_facts && FV(F_DEPLOYMENT_STATE)->t == V_OBJ;
    Str info = with_facts ? str_of(FV(F_MODEL_INFO_ID)) : (Str){NULL, 0};
    if (recorded_state) {
        for (int i = 0; i < 4; i++) st[i] = str_of(AT(R, I_STATE, i));
    } else { /* from the label values (model, model_id, api_base, provider) and the model info id */
        st[0] = or_empty(model);
        st[1] = truthy_str(info) ? info : or_empty(str_of(PV(P_MODEL_ID)));
        st[2] = or_empty(str_of(PV(P_API_BASE)));
        st[3] = or_empty(provider);
    }
    a.spend = is_set(PV(P_COST)) ? PV(P_COST)->d : 0.0;
    if (!(a.spend > -MAX_VALUE && a.spend < MAX_VALUE)) return 0;
    a.prompt = is_set(PV(P_PROMPT)) ? PV(P_PROMPT)->i : 0;
    a.completion = completion_tokens > 0 ? completion_tokens : 0;
    a.total = is_set(PV(P_TOTAL)) ? PV(P_TOTAL)->i : 0;
    a.cache_hit = PV(P_CACHE_HIT)->t == V_TRUE ? 1 : PV(P_CACHE_HIT)->t == V_FALSE ? 0 : -1;
    a.hist[0] = total;
    if (seconds(api_start, end, &a.hist[1])) return 0;
    if (stream == 1 && seconds(api_start, completion_start, &a.hist[2])) return 0;
    a.hist[3] = queue;
    a.hist[4] = overhead;
    a.hist[5] = per_token;
    for (int i = 0; i < 6; i++)
        if (checked(a.hist[i])) return 0;
    c.args[A_PAYLOAD_ZERO_COST] = zero_cost_reason(R, pay, zcd);

    Key key;
    key_start(L, &key, 'p');
    int r = 0;
    for (int i = 0; i < A_PAYLOAD_N; i++) r |= key_put(L, &key, c.args[i]);
    if (recorded_state) {
        r |= key_put(L, &key, (Str){"s", 1});
        for (int i = 0; i < 4; i++) r |= key_put(L, &key, st[i]);
    } else {
        r |= key_put(L, &key, (Str){"i", 1});
        r |= key_put(L, &key, truthy_str(info) ? info : (Str){NULL, 0});
    }
    if (r) return -1;
    if (key.overflow) return 0;
    PyObject *entry = entry_for(L, &key, make_slot, &c, st);
    if (entry == NULL) return -1;
    return apply(L, entry, 0, &a) ? -1 : 1;
#undef PV
#undef MV
#undef FV
#undef MD
}

/* ---------------------------------------------------------------------------------------------
 * Compact records (parse._compact_record)
 */
typedef struct {
    Str model, provider;
    int failed;
} CompactCtx;

static PyObject *make_compact_slot(Loop *L, void *vctx) {
    CompactCtx *c = vctx;
    PyObject *model = py_str(c->model), *provider = py_str(c->provider), *slot = NULL;
    if (model != NULL && provider != NULL)
        slot = PyObject_CallFunctionObjArgs(L->compact_slot, model, provider, c->failed ? Py_True : Py_False, NULL);
    Py_XDECREF(model);
    Py_XDECREF(provider);
    return slot;
}

/* parse._compact_time, for naive "YYYY-MM-DDTHH:MM:SS.fff" and epoch numbers; 1 ok, 0 decline, -1 error */
static int compact_time(Loop *L, const Val *ts, double *out) {
    if (ts->t == V_ABSENT || ts->t == V_NULL) {
        *out = 0.0;
        return 1;
    }
    if (ts->t == V_INT || ts->t == V_FLOAT) { /* parse.epoch */
        double x = ts->d;
        if (x > 1e14)
            x = x / 1e6;
        else if (x > 1e11)
            x = x / 1e3;
        if (!(x >= 0.0 && x < L->max_time)) return 0;
        *out = x;
        return 1;
    }
    const char *p = ts->p;
    if (ts->n != 23 || p[19] != '.') return 0;
    int ms;
    if (digits_at(p + 20, 3, &ms)) return 0;
    if (!L->second_ok || memcmp(L->second_text, p, 19) != 0) {
        PyObject *text = PyUnicode_DecodeASCII(p, 19, NULL);
        if (text == NULL) return -1;
        PyObject *base = PyObject_CallOneArg(L->second, text);
        Py_DECREF(text);
        if (base == NULL) { /* a time the parser refuses (before 1970): the Python path skips the line */
            if (!PyErr_ExceptionMatches(PyExc_Exception)) return -1;
            PyErr_Clear();
            return 0;
        }
        if (base == Py_None) {
            Py_DECREF(base);
            return 0;
        }
        L->second_base = PyFloat_AsDouble(base);
        Py_DECREF(base);
        if (L->second_base == -1.0 && PyErr_Occurred()) return -1;
        memcpy(L->second_text, p, 19);
        L->second_ok = 1;
    }
    *out = L->second_base + (double)(ms * 1000) / 1e6;
    return 1;
}

static int compact(Loop *L, Rec *R) {
#define LV(f) AT(R, I_LINE, f)
    Adds a;
    memset(&a, 0, sizeof a);
    int r = compact_time(L, LV(L_TIMESTAMP), &a.time);
    if (r <= 0) return r;
    Str level = str_of(LV(L_LEVEL));
    int failed;
    if (level.p == NULL || str_is(level, "INFO") || str_is(level, "DEBUG") || str_is(level, "WARNING"))
        failed = 0;
    else if (str_is(level, "ERROR") || str_is(level, "CRITICAL"))
        failed = 1;
    else
        return 0;
    const Val *latency = LV(L_LATENCY);
    if (is_set(latency) && !(latency->d >= 0 && latency->d < MAX_VALUE)) return 0;
    CompactCtx c = {str_of(LV(P_MODEL)), str_of(LV(L_PROVIDER)), failed};
    a.success = !failed;
    if (!failed) {
        if (LV(L_TOKENS)->t == V_OBJ) {
            const Val *t = AT(R, I_TOKENS, 0);
            a.prompt = is_set(&t[0]) ? t[0].i : 0;
            a.completion = is_set(&t[1]) ? t[1].i : 0;
            a.total = is_set(&t[2]) ? t[2].i : 0;
        }
        a.cache_hit = -1;
        if (is_set(latency)) {
            a.hist[0].set = 1;
            a.hist[0].v = latency->d / 1000;
        }
    }
    Str st[4] = {c.model, {"", 0}, {"", 0}, or_empty(c.provider)};
    Key key;
    key_start(L, &key, failed ? 'F' : 'c');
    if (key_put(L, &key, c.model) || key_put(L, &key, c.provider)) return -1;
    if (key.overflow) return 0;
    PyObject *entry = entry_for(L, &key, make_compact_slot, &c, st);
    if (entry == NULL) return -1;
    return apply(L, entry, failed, &a) ? -1 : 1;
#undef LV
}

/* ---------------------------------------------------------------------------------------------
 * One line: 1 taken, 0 declined, -1 error (parse._dispatch's order)
 */
static int take(Loop *L, const char *line, Py_ssize_t n, Rec *R) {
    if (n == 0 || n > L->max_line || line[0] != '{') return 0;
    /* parse.py mends lone surrogates first (re-encoding the line): leave such lines to it */
    for (const char *q = line; (q = memchr(q, '\\', (size_t)(line + n - q))) != NULL; q++)
        if (q + 2 < line + n && q[1] == 'u' && (q[2] == 'd' || q[2] == 'D')) return 0;
    /* the values read are those of the objects parsed (each clears its own), and the facts, read
     * even when a request record has none */
    memset(AT(R, I_FACTS, 0), 0, sizeof(Val) * F_N);
    Scan s = {line, line + n, 0, R->pool};
    if (parse_object(&s, I_LINE, 0)) return 0;
    ws(&s);
    if (s.p != s.end) return 0;
#define LV(f) AT(R, I_LINE, f)
    if (is_set(LV(L_RECORD))) {
        if (!str_is(str_of(LV(L_RECORD)), "request") || LV(L_VERSION)->t != V_INT || LV(L_VERSION)->i != 1) return 0;
        if (!str_is(str_of(LV(L_HOOK)), "success") || LV(L_PAYLOAD)->t != V_OBJ) return 0;
        return payload(L, R, I_PAY, I_PMD, I_PUSAGE, I_PPTD, I_PCTD, I_PHP, I_PZCD, I_FACTS, LV(L_TIME));
        /* facts null: `rec.facts or _EMPTY_FACTS`, an empty Facts: all fields absent, as here */
    }
    if (is_set(LV(P_STATUS)) && (is_set(LV(P_CALL_TYPE)) || is_set(LV(P_GROUP))))
        return payload(L, R, I_LINE, I_MD, I_USAGE, I_PTD, I_CTD, I_HP, I_ZCD, -1, NULL);
    if (is_set(LV(P_MODEL)) && (is_set(LV(L_LATENCY)) || is_set(LV(L_TOKENS)))) return compact(L, R);
    return 0;
#undef LV
}

/* The feed's record count, times and records folded into the aggregator (the additions wait: Pend) */
static int flush(Loop *L) {
    int r = state_flush(L);
    for (int success = 0; success < 2 && r == 0; success++) {
        if (!L->dropped[success]) continue;
        PyObject *n = PyLong_FromLongLong(L->dropped[success]);
        r = n == NULL ? -1 : dict_add(L->dropped_kinds, success ? L->success : L->failure, n);
        Py_XDECREF(n);
        L->dropped[success] = 0;
    }
    if (L->records && r == 0) {
        PyObject *n = PyLong_FromSsize_t(L->records);
        r = n == NULL ? -1 : attr_add(L->agg, s_records, n);
        Py_XDECREF(n);
        L->records = 0;
    }
    if (L->have_times && r == 0) {
        PyObject *have = PyObject_GetAttr(L->agg, s_newest_time);
        if (have == NULL) return -1;
        if (have == Py_None || PyFloat_AsDouble(have) < L->newest) {
            PyObject *v = PyFloat_FromDouble(L->newest);
            r = v == NULL ? -1 : PyObject_SetAttr(L->agg, s_newest_time, v);
            Py_XDECREF(v);
        }
        Py_DECREF(have);
        have = PyObject_GetAttr(L->agg, s_oldest_time);
        if (have == NULL) return -1;
        if (r == 0 && (have == Py_None || PyFloat_AsDouble(have) > L->oldest)) {
            PyObject *v = PyFloat_FromDouble(L->oldest);
            r = v == NULL ? -1 : PyObject_SetAttr(L->agg, s_oldest_time, v);
            Py_XDECREF(v);
        }
        Py_DECREF(have);
        L->have_times = 0;
    }
    return r;
}

/* Forget every cached key and slot (and the naive second: as Parser.drop_caches, it is read again,
 * in the zone of then). */
static void forget(Loop *L) {
    PyDict_Clear(L->cache);
    PyDict_Clear(L->folded);
    PyDict_Clear(L->shared);
    PyDict_Clear(L->state_keys);
    strings_clear(&L->strings);
    L->second_ok = 0;
}

static int begin(Loop *L) {
    PyObject *gen = PyObject_GetAttr(L->agg, s_generation);
    if (gen == NULL) return -1;
    int same = L->generation != NULL ? PyObject_RichCompareBool(gen, L->generation, Py_EQ) : 0;
    if (same < 0) {
        Py_DECREF(gen);
        return -1;
    }
    if (!same) forget(L);
    Py_XSETREF(L->generation, gen);
    Py_XSETREF(L->state, PyObject_GetAttr(L->agg, s_state));
    Py_XSETREF(L->state_records, PyObject_GetAttr(L->agg, s_state_records));
    Py_XSETREF(L->dropped_kinds, PyObject_GetAttr(L->agg, s_dropped_kinds));
    Py_XSETREF(L->max_series, PyObject_GetAttr(L->agg, s_max_series));
    if (L->state == NULL || L->state_records == NULL || L->dropped_kinds == NULL || L->max_series == NULL) return -1;
    if (!PyDict_Check(L->state) || !PyDict_Check(L->dropped_kinds) || !PyLong_Check(L->max_series) ||
        (L->state_records != Py_None && !PyDict_Check(L->state_records))) {
        PyErr_SetString(PyExc_TypeError, "not an Aggregator");
        return -1;
    }
    Py_ssize_t max_series = PyLong_AsSsize_t(L->max_series);
    if (max_series == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear(); /* a cap no dict reaches */
        max_series = PY_SSIZE_T_MAX;
    }
    /* a label set can come with several deployment states: room for a few per series */
    L->max_state = max_series;
    L->max_cached = max_series < 100000 ? max_series + max_series / 4 + 1024 : 200000;
    L->records = 0;
    L->have_times = 0;
    L->dropped[0] = L->dropped[1] = 0;
    return 0;
}

/* One line: taken here, or add(parse(line)) (`obj` its bytes object, or NULL: made then). 0 or -1. */
static int feed_line(Loop *L, PyObject *obj, const char *p, Py_ssize_t n, Rec *R) {
    int r = take(L, p, n, R);
    if (r != 0) return r < 0 ? -1 : 0;
    if (state_flush(L)) return -1; /* the Python way may write the state */
    PyObject *line = obj != NULL ? Py_NewRef(obj) : PyBytes_FromStringAndSize(p, n);
    PyObject *res = line == NULL ? NULL : PyObject_CallOneArg(L->parse, line);
    PyObject *done = res == NULL ? NULL : PyObject_CallOneArg(L->add, res);
    Py_XDECREF(line);
    Py_XDECREF(res);
    if (done == NULL) return -1;
    Py_DECREF(done);
    return 0;
}

/* archive.Lines: data[start:stop], lines joined by b"\n", empty ones skipped (as archive.each_line
 * does); 1 if it is not one */
static int feed_lines(Loop *L, PyObject *item, Rec *R) {
    if (Py_TYPE(item) != (PyTypeObject *)L->lines_type || PyTuple_GET_SIZE(item) != 4) return 1;
    PyObject *data = PyTuple_GET_ITEM(item, 0);
    Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 1)), stop = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 2));
    if ((start == -1 || stop == -1) && PyErr_Occurred()) return -1;
    if (!PyBytes_CheckExact(data) || start < 0 || stop < start || stop > PyBytes_GET_SIZE(data)) {
        PyErr_SetString(PyExc_ValueError, "Lines: data[start:stop] of a bytes object");
        return -1;
    }
    const char *p = PyBytes_AS_STRING(data) + start, *end = PyBytes_AS_STRING(data) + stop;
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *stop = nl != NULL ? nl : end;
        if (stop > p && feed_line(L, NULL, p, stop - p, R)) return -1;
        if (nl == NULL) return 0;
        p = nl + 1;
    }
}

static PyObject *Loop_feed(Loop *L, PyObject *lines) {
    PyObject *it = PyObject_GetIter(lines);
    if (it == NULL) return NULL;
    if (begin(L)) {
        Py_DECREF(it);
        return NULL;
    }
    Rec *R = PyMem_Malloc(sizeof(Rec));
    if (R == NULL) {
        Py_DECREF(it);
        return PyErr_NoMemory();
    }
    PyObject *item;
    int failed = 0;
    while ((item = PyIter_Next(it)) != NULL) {
        int r;
        if (PyBytes_CheckExact(item))
            r = feed_line(L, item, PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item), R);
        else if ((r = feed_lines(L, item, R)) == 1)
            r = feed_line(L, item, NULL, 0, R); /* not bytes: the Python path says what it makes of it */
        Py_DECREF(item);
        if (r < 0) {
            failed = 1;
            break;
        }
    }
    PyMem_Free(R);
    Py_DECREF(it);
    if (failed || PyErr_Occurred()) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (flush(L)) PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (flush(L)) return NULL;
    Py_RETURN_NONE;
}

static int Loop_init(Loop *L, PyObject *args, PyObject *kwds) {
    PyObject *bounds, *o[11];
    if (L->cache != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Loop is initialised once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOidnpO!", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8],
                          &o[9], &bounds, &L->h_first, &L->max_time, &L->max_line, &L->end_user_label, &PyType_Type,
                          &o[10]))
        return -1;
    PyObject **refs[] = {&L->agg,       &L->parse,   &L->add,      &L->payload_slot, &L->failure_slot, &L->compact_slot,
                         &L->second,    &L->histogram, &L->success, &L->failure,      &L->lines_type};
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) *refs[i] = Py_NewRef(o[i]);
    if (!PyType_IsSubtype((PyTypeObject *)L->lines_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Lines: a tuple type (archive.Lines)");
        return -1;
    }
    if (!PyTuple_Check(bounds) || PyTuple_GET_SIZE(bounds) != 6) {
        PyErr_SetString(PyExc_TypeError, "bounds: a tuple of the six histograms' bucket bounds");
        return -1;
    }
    L->n_hist = 6;
    for (int k = 0; k < 6; k++) {
        PyObject *b = PyTuple_GET_ITEM(bounds, k);
        if (!PyTuple_Check(b)) {
            PyErr_SetString(PyExc_TypeError, "bounds: tuples of floats");
            return -1;
        }
        L->n_bounds[k] = (int)PyTuple_GET_SIZE(b);
        L->bounds[k] = PyMem_Malloc(sizeof(double) * (size_t)(L->n_bounds[k] + 1));
        if (L->bounds[k] == NULL) return -1;
        for (int i = 0; i < L->n_bounds[k]; i++) {
            L->bounds[k][i] = PyFloat_AsDouble(PyTuple_GET_ITEM(b, i));
            if (L->bounds[k][i] == -1.0 && PyErr_Occurred()) return -1;
        }
    }
    if (L->h_first + 3 > MAX_INTS) { /* the counters after the histograms: 3 integers and a Small */
        PyErr_SetString(PyExc_ValueError, "more accumulator slots than Pend holds");
        return -1;
    }
    L->pend = PyMem_Calloc(PEND_MIN, sizeof *L->pend);
    L->pend_cap = PEND_MIN;
    L->pend_last = &L->pend_first;
    L->writes = PyMem_Calloc(PEND_MIN, sizeof *L->writes);
    L->writes_cap = PEND_MIN;
    if (L->pend == NULL || L->writes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *name = PyUnicode_FromString("logmetrics._hotloop");
    Py_hash_t seed = name == NULL ? -1 : PyObject_Hash(name); /* random unless PYTHONHASHSEED says */
    Py_XDECREF(name);
    if (seed == -1 || strings_init(&L->strings, (uint64_t)seed)) return -1;
    L->cache = PyDict_New();
    L->folded = PyDict_New();
    L->shared = PyDict_New();
    L->state_keys = PyDict_New();
    return L->cache == NULL || L->folded == NULL || L->shared == NULL || L->state_keys == NULL ? -1 : 0;
}

static void Loop_dealloc(Loop *L) {
    Py_XDECREF(L->agg);
    Py_XDECREF(L->parse);
    Py_XDECREF(L->add);
    Py_XDECREF(L->payload_slot);
    Py_XDECREF(L->failure_slot);
    Py_XDECREF(L->compact_slot);
    Py_XDECREF(L->second);
    Py_XDECREF(L->histogram);
    Py_XDECREF(L->success);
    Py_XDECREF(L->failure);
    Py_XDECREF(L->lines_type);
    Py_XDECREF(L->cache);
    Py_XDECREF(L->folded);
    Py_XDECREF(L->shared);
    Py_XDECREF(L->state_keys);
    strings_free(&L->strings);
    Py_XDECREF(L->generation);
    Py_XDECREF(L->state);
    Py_XDECREF(L->state_records);
    Py_XDECREF(L->dropped_kinds);
    Py_XDECREF(L->max_series);
    for (int k = 0; k < 8; k++) PyMem_Free(L->bounds[k]);
    for (Pend *p = L->pend_first, *next; p != NULL; p = next) { /* lost: Aggregator.settle writes it first */
        next = p->next;
        pend_free(p);
    }
    PyMem_Free(L->pend);
    for (size_t i = 0; i < L->writes_cap; i++) Py_XDECREF(L->writes[i].key);
    PyMem_Free(L->writes);
    Py_TYPE(L)->tp_free((PyObject *)L);
}

static PyObject *Loop_clear(Loop *L, PyObject *unused) {
    if (settle(L)) return NULL;
    forget(L);
    Py_RETURN_NONE;
}

static PyObject *Loop_settle(Loop *L, PyObject *unused) {
    if (settle(L)) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Loop_methods[] = {
    {"clear", (PyCFunction)Loop_clear, METH_NOARGS,
     "clear(): settle(), and forget the cached slots (they refill as lines come)."},
    {"settle", (PyCFunction)Loop_settle, METH_NOARGS,
     "settle(): write the additions waiting in C into the aggregator's objects."},
    {"feed", (PyCFunction)Loop_feed, METH_O, "feed(lines): add(parse(line)) for each line, fused where it can be."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LoopType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "logmetrics._hotloop.Loop",
    .tp_basicsize = sizeof(Loop),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Loop_init,
    .tp_dealloc = (destructor)Loop_dealloc,
    .tp_methods = Loop_methods,
    .tp_doc = "Loop(agg, parse, add, payload_slot, failure_slot, compact_slot, second, Histogram, SUCCESS, FAILURE, bounds, "
              "first_histogram_slot, max_time, max_line_bytes, end_user_label, Lines)",
};

/* bytes.count(b"\n", start, stop), by memchr: a tenth of the time on lines of a few hundred bytes */
static PyObject *newlines(PyObject *module, PyObject *args) {
    const char *data;
    Py_ssize_t size, start, stop;
    if (!PyArg_ParseTuple(args, "y#nn", &data, &size, &start, &stop)) return NULL;
    if (start < 0 || stop < start || stop > size) {
        PyErr_SetString(PyExc_ValueError, "newlines(data, start, stop): a slice of data");
        return NULL;
    }
    const char *p = data + start, *end = data + stop;
    Py_ssize_t n = 0;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return PyLong_FromSsize_t(n);
}

/* fast_float's result for a number's text, or None where it leaves the number to Python (tests) */
static PyObject *fast_float_py(PyObject *module, PyObject *text) {
    if (!PyBytes_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "fast_float(bytes)");
        return NULL;
    }
    double d;
    const char *p = PyBytes_AS_STRING(text);
    if (PyBytes_GET_SIZE(text) == 0 || !fast_float(p, p + PyBytes_GET_SIZE(text), &d)) Py_RETURN_NONE;
    return PyFloat_FromDouble(d);
}

static PyMethodDef module_methods[] = {
    {"fast_float", (PyCFunction)fast_float_py, METH_O,
     "fast_float(text): the fast path's float for a JSON number's text, or None (it leaves it to Python)."},
    {"newlines", (PyCFunction)newlines, METH_VARARGS,
     "newlines(data, start, stop): data.count(b'\\n', start, stop), faster (archive.Lines)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hotloop", "The replay's fused hot loop (hotloop.py).",
                                    -1, module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__hotloop(void) {
    init_string_class();
    Schema *all[] = {&S_TD, &S_USAGE, &S_MD, &S_HP, &S_EI, &S_ZCD, &S_PAYLOAD, &S_STATE, &S_ANYDICT, &S_FACTS,
                     &S_TOKENS, &S_LINE};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (schema_index(all[i])) {
            PyErr_SetString(PyExc_RuntimeError, "_hotloop: field table collision");
            return NULL;
        }
    n_insts = pool_used = 0;
    I_LINE = layout(&S_LINE);
    if (I_LINE < 0) {
        PyErr_SetString(PyExc_RuntimeError, "_hotloop: layout too big");
        return NULL;
    }
    I_MD = insts[I_LINE].child[P_METADATA];
    I_USAGE = insts[I_MD].child[M_USAGE];
    I_PTD = insts[I_USAGE].child[U_PTD];
    I_CTD = insts[I_USAGE].child[U_CTD];
    I_HP = insts[I_LINE].child[P_HIDDEN];
    I_ZCD = insts[I_LINE].child[P_ZERO_COST];
    I_PAY = insts[I_LINE].child[L_PAYLOAD];
    I_PMD = insts[I_PAY].child[P_METADATA];
    I_PUSAGE = insts[I_PMD].child[M_USAGE];
    I_PPTD = insts[I_PUSAGE].child[U_PTD];
    I_PCTD = insts[I_PUSAGE].child[U_CTD];
    I_PHP = insts[I_PAY].child[P_HIDDEN];
    I_PZCD = insts[I_PAY].child[P_ZERO_COST];
    I_FACTS = insts[I_LINE].child[L_FACTS];
    I_STATE = insts[I_FACTS].child[F_DEPLOYMENT_STATE];
    I_TOKENS = insts[I_LINE].child[L_TOKENS];

#define INTERN(var, text)                                              \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    INTERN(s_counts, "counts")
    INTERN(s_sum_exact, "sum_exact")
    INTERN(s_requests, "requests")
    INTERN(s_failures, "failures")
    INTERN(s_prompt_tokens, "prompt_tokens")
    INTERN(s_completion_tokens, "completion_tokens")
    INTERN(s_spend_exact, "spend_exact")
    INTERN(s_latency, "latency")
    INTERN(s_ttft, "ttft")
    INTERN(s_records, "records")
    INTERN(s_newest_time, "newest_time")
    INTERN(s_oldest_time, "oldest_time")
    INTERN(s_state, "state")
    INTERN(s_state_records, "_state_records")
    INTERN(s_dropped_kinds, "_dropped_kinds")
    INTERN(s_max_series, "max_series")
    INTERN(s_generation, "generation")
    INTERN(s_set_state, "set_state")
    INTERN(s_dict, "__dict__")
    if ((i_one = PyLong_FromLong(1)) == NULL || (i_sketch_zero = PyLong_FromLong(-1000000000L)) == NULL) return NULL;
    if (PyType_Ready(&LoopType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Loop", (PyObject *)&LoopType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
