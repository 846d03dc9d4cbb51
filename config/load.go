package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/avedge/avedge/internal/secretfile"
)

// Parse reads args (without the program name): --config FILE first, then every flag over it.
// It returns flag.ErrHelp for -h/--help after printing usage to out. A secret given on the
// command line, or inline in a config file that users other than its owner can read, is used;
// Build's Settings.Warnings say where it should go instead.
func Parse(args []string, out io.Writer) (Options, error) {
	o := Defaults()
	// A first pass finds --config (knowing every flag, so that their values are skipped);
	// errors and -h wait for the second, which prints them with the defaults the file set.
	pre := flag.NewFlagSet("avedge", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	var path string
	pre.StringVar(&path, "config", "", "")
	var scratch Options
	scratch.FlagSet(pre)
	if err := pre.Parse(args); err != nil && !errors.Is(err, flag.ErrHelp) {
		return o, err
	}
	if path != "" {
		if err := o.LoadFile(path); err != nil {
			return o, err
		}
	}
	fs := flag.NewFlagSet("avedge", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.String("config", "", "YAML file with the same keys as these flags (flags given here override it)")
	o.FlagSet(fs)
	fs.Usage = func() {
		fmt.Fprintf(out, "avedge: audio/video edge relay (STUN/TURN)\n\nUsage: avedge [flags]\n\nWith no flags it serves on 127.0.0.1 (UDP+TCP 3478), relays from 127.0.0.1:50000-59999,\ngenerates a shared secret and prints a credential that works at once (printed only while\nevery listener is on loopback).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("config: unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		if op, ok := lookupOption(f.Name); ok && op.secretFile != "" && op.given(&o) {
			o.notes = append(o.notes, secretfile.CommandLineWarning(op.name, op.secretFile))
		}
	})
	return o, nil
}

// LoadFile merges a YAML file over o, refusing unknown keys. A secret written in it inline
// while users other than its owner can read it is noted for Settings.Warnings.
func (o *Options) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	set, err := o.load(f, path)
	if err != nil {
		return err
	}
	var exposed *secretfile.ExposedError
	if fi, err := f.Stat(); err != nil || !errors.As(secretfile.CheckInfo(path, fi), &exposed) {
		return nil
	}
	for _, op := range optionTable {
		if op.secretFile != "" && set[op.name] && op.given(o) {
			o.notes = append(o.notes, fmt.Sprintf("%s holds %s inline and is mode %04o, owner uid %d: %s; chmod 600 %s, or put it in %s",
				path, op.name, uint32(exposed.Mode), exposed.UID, exposed.Who(), path, op.secretFile))
		}
	}
	return nil
}

// Load merges YAML from r over o, refusing unknown keys; name is used in errors, which name
// the key at fault. Only the first document of r is read.
func (o *Options) Load(r io.Reader, name string) error {
	_, err := o.load(r, name)
	return err
}

// load is Load; it returns the keys the document set.
func (o *Options) load(r io.Reader, name string) (map[string]bool, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("config: %s: %w (keys are the flag names of avedge --help)", name, err)
	}
	set, err := o.loadDocument(&doc)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w (keys are the flag names of avedge --help)", name, err)
	}
	return set, nil
}

// keyError is an error in the value of a YAML key.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return "key " + e.key + ": " + e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// loadDocument sets the options a YAML document's top-level mapping names, and returns them.
// A null document sets nothing.
func (o *Options) loadDocument(doc *yaml.Node) (map[string]bool, error) {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return nil, nil
	case n.Kind != yaml.MappingNode:
		return nil, fmt.Errorf("line %d, column %d: want a mapping of keys to values, not %s", n.Line, n.Column, n.ShortTag())
	}
	l := loader{o: o, set: map[string]bool{}, mappings: map[*yaml.Node]bool{}}
	return l.set, l.mapping(n)
}

// loader sets options from mappings: the document's, then those it merges (YAML's "<<"),
// which set only what is still unset, the first merged mapping first, as yaml.v3 merges into
// a struct.
type loader struct {
	o   *Options
	set map[string]bool // options set so far
	// mappings are those begun (false) or done (true): a mapping merged again, through
	// another alias, sets nothing new and is skipped; one merged into itself is refused.
	mappings map[*yaml.Node]bool
}

// mapping sets the options m names that are still unset, then applies m's merges.
func (l *loader) mapping(m *yaml.Node) error {
	if done, seen := l.mappings[m]; seen {
		if done {
			return nil
		}
		return fmt.Errorf("line %d, column %d: a mapping merged into itself", m.Line, m.Column)
	}
	l.mappings[m] = false
	var merges []*yaml.Node
	line := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge") {
			merges = append(merges, v)
			continue
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!null" {
			continue // a null key sets nothing, as in yaml.v3's decoding into a struct
		}
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d, column %d: a key must be an option's name, not %s", k.Line, k.Column, k.ShortTag())
		}
		if first, dup := line[k.Value]; dup {
			return &keyError{k.Value, fmt.Errorf("line %d: mapping key %q already defined at line %d", k.Line, k.Value, first)}
		}
		line[k.Value] = k.Line
		op, ok := lookupOption(k.Value)
		if !ok {
			return &keyError{k.Value, fmt.Errorf("line %d, column %d: unknown key", k.Line, k.Column)}
		}
		if l.set[k.Value] {
			continue
		}
		l.set[k.Value] = true
		if err := v.Decode(op.field(l.o)); err != nil {
			return &keyError{k.Value, err}
		}
	}
	for _, mv := range merges {
		if err := l.merge(mv); err != nil {
			return err
		}
	}
	l.mappings[m] = true
	return nil
}

// merge applies the value of a "<<" key: a mapping, an alias of one, or a sequence of them.
func (l *loader) merge(v *yaml.Node) error {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
	}
	for _, it := range items {
		if it.Kind == yaml.AliasNode && it.Alias != nil {
			it = it.Alias
		}
		if it.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d, column %d: a merge (<<) takes a mapping or a sequence of mappings", it.Line, it.Column)
		}
		if err := l.mapping(it); err != nil {
			return err
		}
	}
	return nil
}
