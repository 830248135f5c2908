/*
 * chdb-server: run ClickHouse (embedded in libchdb.so) with clickhouse-local
 * style command-line arguments, for the native dev stack.
 *
 * The stack starts it with --listen_host/--http_port/--tcp_port and a query that
 * opens the listeners and then runs (practically) forever: chDB serves HTTP and
 * native TCP only while that query runs.
 *
 * Signals: chDB's own crash handlers sleep for minutes before re-raising, so they
 * are switched off (a crash is then immediate). SIGTERM/SIGINT/SIGHUP end the
 * process at once with status 0. Every INSERT has already written its part to
 * --path when it returned, so nothing acknowledged is lost; the long-running
 * query is read-only.
 *
 * Build: cc -O2 -o chdb-server launcher.c -L DIST -lchdb -Wl,-rpath,DIST
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct chdb_result;
extern struct chdb_result *chdb_query_cmdline(int argc, char **argv);
extern const char *chdb_result_error(struct chdb_result *result);
extern void chdb_set_signal_handlers_enabled(int enabled);

static void on_stop(int sig)
{
    static const char msg[] = "chdb-server: stop signal received, exiting\n";
    (void)sig;
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(0);
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    chdb_set_signal_handlers_enabled(0);

    struct chdb_result *result = chdb_query_cmdline(argc, argv);
    if (result == NULL) {
        fprintf(stderr, "chdb-server: chdb_query_cmdline returned no result\n");
        return 1;
    }
    const char *error = chdb_result_error(result);
    if (error != NULL && error[0] != '\0') {
        fprintf(stderr, "chdb-server: %s\n", error);
        fflush(stderr);
        _exit(1);
    }
    fflush(stdout);
    _exit(0);
}
