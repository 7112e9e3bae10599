/*
 * The pod sandbox process: the first process of every pod, holding its namespaces open.
 * It waits for signals: SIGINT and SIGTERM end it (the runtime stops a sandbox with SIGTERM),
 * SIGCHLD reaps orphans re-parented to it when the pod shares one PID namespace.
 * Built with `gcc -static` into the sandbox image by e2e/k8s.d/images/build.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("fjord-pause");
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "warning: pause should be the first process of its PID namespace\n");
    }
    struct sigaction stop_action = {.sa_handler = stop};
    struct sigaction reap_action = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGINT, &stop_action, NULL) < 0 || sigaction(SIGTERM, &stop_action, NULL) < 0 ||
        sigaction(SIGCHLD, &reap_action, NULL) < 0) {
        perror("sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
