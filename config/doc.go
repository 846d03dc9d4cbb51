// Package config reads avedge's configuration: command-line flags and an optional YAML file
// with the same keys (coturn's names where coturn has the same option), checked strictly, and
// turned into the relay's, the credential service's and the metrics endpoint's settings.
//
// Precedence: built-in defaults, then the file named by --config, then flags given on the
// command line. An unknown key, a bad port range, a missing certificate file or an address
// that does not parse is refused at start with a message that names the key and what to do.
//
// Start here: Parse (load.go) reads the flags and the file into Options, whose every option is
// one row of optionTable (options.go): flag name and YAML key, field, default, usage. Build
// (build.go) reads the files and host addresses the options name (read.go), then checks the
// options and derives the Settings, one function per concern, without I/O.
package config
