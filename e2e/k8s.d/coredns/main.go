// Command coredns is CoreDNS (github.com/coredns/coredns) with only the plugins the e2e
// cluster's Corefile can use, built by e2e/k8s.d/build in place of the upstream main package.
//
// Upstream's main imports core/plugin, which registers every plugin and with them the SDKs of
// three clouds, tracing and more: twice the build time for nothing used here. CoreDNS
// documents this way of choosing plugins at compile time; the directive order stays upstream's
// (core/dnsserver's Directives), which lists plugins whether or not they are compiled in.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/whoami"
)

func main() {
	coremain.Run()
}
