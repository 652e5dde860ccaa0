package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/cxbridge/cxbridge/internal/transform"
)

// Transform is the jq program that maps every record to the CXone event
// (--transform, or --transform-file for a longer one). Neither set: records
// must already be CXone events.
type Transform struct {
	Program string // --transform: the program's text
	File    string // --transform-file: a file holding it

	compiled *transform.Program // by Load
}

// Register defines --transform and --transform-file on fs.
func (t *Transform) Register(fs *FlagSet) {
	fs.StringVar(&t.Program, "transform", t.Program,
		"jq program that maps each record to the CXone event: . is the record value parsed as JSON; $key, $headers, $topic, $partition, $offset and $timestamp describe the record. "+
			"Its result is validated like an untransformed event; a program that fails, or yields no value, several or a non-object, dead-letters the record as transform_failed "+
			"(default: none, records must be CXone events)")
	fs.StringVar(&t.File, "transform-file", t.File, "file holding the --transform program (instead of --transform)")
}

// Set reports whether a program is given (--transform or --transform-file).
func (t *Transform) Set() bool { return t.Program != "" || t.File != "" }

// Validate adds a problem when both settings are given, the file cannot be
// read or the program does not compile (with the compiler's line and
// column), and keeps the compiled program for Load.
func (t *Transform) Validate(p *Problems) { t.load(p) }

// setting is the flag that holds the program.
func (t *Transform) setting() string {
	if t.File != "" {
		return "transform-file"
	}
	return "transform"
}

// Load returns the compiled program, nil when no program is set. It
// compiles the program once (Validate already did when it ran); errors are
// *Error, naming the setting.
func (t *Transform) Load() (*transform.Program, error) {
	var p Problems
	prog := t.load(&p)
	return prog, p.Err()
}

// load is Load adding its problem to p.
func (t *Transform) load(p *Problems) *transform.Program {
	if t.compiled != nil {
		return t.compiled
	}
	src := t.Program
	switch {
	case t.Program != "" && t.File != "":
		p.Add("transform-file", "give either --transform or --transform-file, not both")
		return nil
	case !t.Set():
		return nil
	case t.File != "":
		b, err := os.ReadFile(t.File)
		if err != nil {
			p.Add("transform-file", "cannot read the program: %v", err)
			return nil
		}
		src = string(b)
	}
	if strings.TrimSpace(src) == "" {
		what := "is blank"
		if t.File != "" {
			what = fmt.Sprintf("%s holds no program", t.File)
		}
		p.Add(t.setting(), "%s; give a jq program, or leave both --transform and --transform-file unset", what)
		return nil
	}
	prog, err := transform.Compile(src)
	if err != nil {
		p.Add(t.setting(), "%v", err)
		return nil
	}
	t.compiled = prog
	return prog
}
