/* `lmcore template`: stdin forms, options, named templates, chat_template.jinja precedence,
 * AddedToken special tokens, exact output; bad input gives one line and a non-zero exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

static const char *cli(void) {
    const char *c = getenv("LMCORE_CLI");
    return c ? c : "./lmcore";
}

/* Run `lmcore template ARGS` with `input` on stdin; stdout (and stderr when err) into out. */
static int run(const char *args, const char *input, int err, char *out, size_t cap) {
    char in_path[256], cmd[4096];
    snprintf(in_path, sizeof in_path, "/tmp/lmcore_tpl_in_%d.json", (int)getpid());
    FILE *f = fopen(in_path, "wb");
    if (!f)
        return -1;
    fputs(input, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s template %s < %s %s", cli(), args, in_path, err ? "2>&1" : "2>/dev/null");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    unlink(in_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int one_line(const char *s) {
    const char *nl = strchr(s, '\n');
    return *s && (!nl || nl[1] == 0);
}

int main(void) {
    char dir[256], path[512], args[1024], out[8192];
    snprintf(dir, sizeof dir, "/tmp/lmcore_tpl_%d", (int)getpid());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_text(path,
               "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\"}, \"eos_token\": \"</s>\",\n"
               " \"chat_template\": [\n"
               "  {\"name\": \"default\", \"template\": \"{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
               "{% if add_generation_prompt %}[assistant:{% endif %}{% if flag is defined %}<{{ flag }}>{% endif %}\"},\n"
               "  {\"name\": \"tool_use\", \"template\": \"T{{ tools | length }}{{ eos_token }}\"}]}\n");
    const char *msgs = "[{\"role\": \"user\", \"content\": \"hi\\n\"}]";

    snprintf(args, sizeof args, "-t %s", dir);
    CHECK(run(args, msgs, 0, out, sizeof out) == 0);
    CHECKF(strcmp(out, "<s>[user:hi\n][assistant:") == 0, "default: [%s]", out);

    snprintf(args, sizeof args, "-t %s --no-add-generation-prompt --config '{\"flag\": 7}'", dir);
    CHECK(run(args, msgs, 0, out, sizeof out) == 0);
    CHECKF(strcmp(out, "<s>[user:hi\n]<7>") == 0, "options: [%s]", out);

    snprintf(args, sizeof args, "-t %s", dir);
    CHECK(run(args, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"add_generation_prompt\": false, \"flag\": true}",
              0, out, sizeof out) == 0);
    CHECKF(strcmp(out, "<s>[user:x]<True>") == 0, "object form: [%s]", out);

    snprintf(args, sizeof args, "-t %s --name tool_use", dir);
    CHECK(run(args, "{\"messages\": [], \"tools\": [1, 2, 3]}", 0, out, sizeof out) == 0);
    CHECKF(strcmp(out, "T3</s>") == 0, "named: [%s]", out);

    /* chat_template.jinja wins over tokenizer_config.json */
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    write_text(path, "J{{ messages | length }}{{ bos_token }}\n");
    snprintf(args, sizeof args, "-t %s", dir);
    CHECK(run(args, msgs, 0, out, sizeof out) == 0);
    CHECKF(strcmp(out, "J1<s>") == 0, "jinja file: [%s]", out);

    /* errors: one line, non-zero */
    CHECK(run("--help", "", 0, out, sizeof out) == 0 && strstr(out, "usage"));
    snprintf(args, sizeof args, "-t %s", dir);
    CHECK(run(args, "not json", 1, out, sizeof out) != 0 && one_line(out));
    CHECK(run(args, "{\"messages\": 3}", 1, out, sizeof out) != 0 && one_line(out));
    snprintf(args, sizeof args, "-t %s --name nope", dir);
    CHECK(run(args, msgs, 1, out, sizeof out) != 0 && one_line(out) && strstr(out, "nope"));
    CHECK(run("-t /nonexistent/dir", msgs, 1, out, sizeof out) != 0 && one_line(out));
    CHECK(run("", msgs, 1, out, sizeof out) != 0 && one_line(out));
    write_text(path, "ok\n{% for x in messages %}{{ x.content + 1 }}{% endfor %}");
    snprintf(args, sizeof args, "-t %s", dir);
    CHECKF(run(args, msgs, 1, out, sizeof out) != 0 && one_line(out) && strstr(out, "chat_template.jinja:2:37: unsupported operand"),
           "runtime error: [%s]", out);
    write_text(path, "{% if %}");
    CHECKF(run(args, msgs, 1, out, sizeof out) != 0 && one_line(out) && strstr(out, ":1:7:"), "syntax error: [%s]", out);

    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    rmdir(dir);
    return test_done("test_template_cli");
}
