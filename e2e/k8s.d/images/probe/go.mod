module fjord.dev/e2e/k8s/probe

go 1.22
