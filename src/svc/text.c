/* Text mode: newline-delimited JSON <-> protobuf (text.h). */
#include "svc/text.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc/runtime.h"
#include "util/jsondepth.h"
#include "util/pbjson.h"

/* obj as one compact line; takes obj. NULL when out of memory. */
static char *text_reply(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return s;
}

static char *error_line(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* {"error":"<fmt...>","code":"<code>"} */
static char *error_line(const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_t *text = json_string(msg);
    if (text == NULL)
        text = json_string("(error text is not valid UTF-8)");
    json_object_set_new(o, "error", text);
    json_object_set_new(o, "code", json_string(code));
    return text_reply(o);
}

char *svc_text_error(void *user, const char *why)
{
    (void)user;
    return text_reply(json_pack("{s:s}", "error", why));
}

/* {"commands":["status","ping",<every method>]} */
static char *help_line(const svc *s)
{
    json_t *cmds = json_array();
    json_array_append_new(cmds, json_string("status"));
    json_array_append_new(cmds, json_string("ping"));
    for (size_t i = 0; i < s->nmethods; i++)
        json_array_append_new(cmds, json_string(s->methods[i].name));
    return text_reply(json_pack("{s:o}", "commands", cmds));
}

/* Runs method m on the request object in as a binary call would, and
 * answers its response as JSON, or an error line. */
static char *call_line(svc *s, void *thread_state, const svc_method *m, json_t *in)
{
    char *answer = NULL;
    ProtobufCMessage *req = NULL, *resp = NULL;
    uint8_t *body = NULL;
    rpc_reply rep;
    char why[256];
    memset(&rep, 0, sizeof(rep));

    if (pbjson_to_message(m->req, in, &req, why, sizeof(why)) < 0) {
        answer = error_line("INVALID_ARGUMENT", "%s: %s", m->name, why);
        goto out;
    }
    size_t n = protobuf_c_message_get_packed_size(req);
    body = malloc(n ? n : 1);
    if (body == NULL) {
        answer = error_line("INTERNAL", "out of memory");
        goto out;
    }
    protobuf_c_message_pack(req, body);
    rpc_call_ctx ctx = {.method = m->name, .trace_id = "", .thread_state = thread_state,
                        .user = s};
    m->fn(&ctx, body, n, &rep);
    rpc_stats_call(s->stats, m->name, rep.status);
    if (rep.status != TCPOPS__STATUS__OK) {
        answer = error_line(rpc_status_name(rep.status), "%s", rep.error);
        goto out;
    }
    resp = protobuf_c_message_unpack(m->resp, NULL, rep.body_len, rep.body);
    if (resp == NULL) {
        answer = error_line("INTERNAL", "%s answered bytes that do not decode", m->name);
        goto out;
    }
    answer = text_reply(pbjson_from_message(resp));
out:
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (req != NULL)
        protobuf_c_message_free_unpacked(req, NULL);
    free(rep.body);
    free(body);
    return answer;
}

/* The answer to one parsed line: a command of its own or a method call. */
static char *command_line(svc *s, void *thread_state, json_t *in)
{
    const char *cmd = json_string_value(json_object_get(in, "cmd"));
    if (cmd == NULL)
        return error_line("INVALID_ARGUMENT", "missing \"cmd\" (try {\"cmd\":\"help\"})");
    if (strcmp(cmd, "ping") == 0)
        return text_reply(json_pack("{s:b}", "pong", 1));
    if (strcmp(cmd, "help") == 0)
        return help_line(s);
    const svc_method *m = svc_rt_find(s, strcmp(cmd, "status") == 0 ? "svc.Status" : cmd);
    if (m == NULL)
        return error_line("UNIMPLEMENTED", "unknown command \"%.100s\" (try {\"cmd\":\"help\"})",
                          cmd);
    return call_line(s, thread_state, m, in);
}

char *svc_text_line(void *thread_state, void *user, const char *line, size_t len)
{
    svc *s = user;
    json_error_t jerr;
    json_t *in = NULL;
    char *answer = NULL;

    /* A server worker runs this, on a thread stack of RLIMIT_STACK's size;
     * jansson would recurse once per level, up to 2048 of them. */
    if (!util_json_depth_ok(line, len, UTIL_JSON_MAX_DEPTH)) {
        answer = error_line("INVALID_ARGUMENT", "JSON nested more than %d levels deep",
                            UTIL_JSON_MAX_DEPTH);
    } else if ((in = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        answer = error_line("INVALID_ARGUMENT", "invalid JSON: %s", jerr.text);
    } else if (!json_is_object(in)) {
        answer = error_line("INVALID_ARGUMENT", "expected a JSON object");
    } else {
        answer = command_line(s, thread_state, in);
    }
    json_decref(in);
    return answer != NULL ? answer : strdup("{\"error\":\"out of memory\",\"code\":\"INTERNAL\"}");
}
