//go:build !linux

package deploy_test

// runSandboxLauncher: the systemd sandbox test runs on Linux only.
func runSandboxLauncher() {}
