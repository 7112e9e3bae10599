// Command probe is the in-cluster test helper of e2e/k8s: a static binary in an image of its
// own (fjord/probe:dev) that checks, from inside a pod, what the host cannot see directly.
//
//	probe sleep                    wait for SIGTERM (a pod to `kubectl exec` into)
//	probe lookup NAME [TIMEOUT]    resolve NAME with the pod's /etc/resolv.conf until it
//	                               answers or TIMEOUT (default 30s) passes; print the addresses
//	probe tcp HOST:PORT [TIMEOUT]  open a TCP connection, retrying until TIMEOUT
//
// It uses Go's own resolver, so the image needs no libc, NSS modules or shell.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "sleep":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		return
	case "lookup":
		err = retry(arg(3, "30s"), func(ctx context.Context) error {
			resolver := &net.Resolver{PreferGo: true}
			addrs, err := resolver.LookupHost(ctx, arg(2, ""))
			if err == nil {
				sort.Strings(addrs)
				fmt.Println(strings.Join(addrs, " "))
			}
			return err
		})
	case "tcp":
		err = retry(arg(3, "30s"), func(ctx context.Context) error {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", arg(2, ""))
			if err == nil {
				fmt.Printf("connected to %s\n", conn.RemoteAddr())
				conn.Close()
			}
			return err
		})
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// retry calls attempt, one second apart, until it succeeds or the timeout passes.
func retry(timeout string, attempt func(context.Context) error) error {
	limit, err := time.ParseDuration(timeout)
	if err != nil {
		return fmt.Errorf("bad timeout %q: %w", timeout, err)
	}
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = attempt(ctx)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Second)
	}
}

func arg(i int, fallback string) string {
	if len(os.Args) > i {
		return os.Args[i]
	}
	if fallback == "" {
		usage()
	}
	return fallback
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: probe sleep | lookup NAME [TIMEOUT] | tcp HOST:PORT [TIMEOUT]")
	os.Exit(2)
}
