// Package proxytest starts a real front proxy — nginx (the Debian package
// nginx, 1.22) or Caddy (the Debian package caddy, 2.6) — for tests, with
// a configuration that users copy from the documentation, so that what the
// README promises is what the tests run.
//
// [StartNginx] and [StartCaddy] read a documented configuration file,
// replace its example addresses ([ExampleListen], [ExamplePimguard],
// [ExampleUpstream]) with the test's loopback addresses, write the result
// into t.TempDir(), start the proxy in the foreground, wait until it accepts
// connections and stop it when the test ends. The proxy's own log (its
// standard error) is written to the test log when the test fails.
//
// Under CI=true a test that cannot find the proxy's binary fails; elsewhere
// it is skipped with a message saying how to install it ([InstallHint]).
// Nothing here mocks a proxy; the package imports nothing of pimguard, so
// that any package's tests can use it.
package proxytest
