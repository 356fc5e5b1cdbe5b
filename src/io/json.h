/* JSON via cJSON (Debian libcjson-dev), with errors that name the file and position. */
#ifndef LM_IO_JSON_H
#define LM_IO_JSON_H
#include <cjson/cJSON.h>

#include "core/status.h"

/* Parse `len` bytes; `what` names the source in errors (a path). */
lm_status lm_json_parse(const char *text, size_t len, const char *what, cJSON **out);
lm_status lm_json_load_file(const char *path, cJSON **out);

/* Typed lookups. Each returns `def` when the key is absent or null, and fails with
 * LM_ERR_FORMAT (naming `what` and the key) when the value has the wrong type. */
lm_status lm_json_int(const cJSON *obj, const char *key, long long def, long long *out, const char *what);
lm_status lm_json_num(const cJSON *obj, const char *key, double def, double *out, const char *what);
lm_status lm_json_bool(const cJSON *obj, const char *key, int def, int *out, const char *what);
/* Returns NULL when absent/null; LM_ERR_FORMAT when present but not a string. */
lm_status lm_json_str(const cJSON *obj, const char *key, const char **out, const char *what);
/* Present and not JSON null. */
const cJSON *lm_json_get(const cJSON *obj, const char *key);

#endif
