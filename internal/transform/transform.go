// Package transform turns a Kafka record into a CXone event with a jq
// program (github.com/itchyny/gojq). The program is compiled once and can
// then be applied by any number of goroutines at once.
//
// The program's input `.` is the record value parsed as JSON. It also sees:
//
//	$key        the record key as a string ("" when the record has none)
//	$headers    the record headers as an object of strings; when a key
//	            repeats, the last header wins (as package event reads
//	            headers); keys are kept as they are (Kafka header keys are
//	            case-sensitive); bytes that are not UTF-8, in keys or
//	            values, become U+FFFD
//	$topic      the topic (string)
//	$partition  the partition (number)
//	$offset     the offset (number)
//	$timestamp  the record timestamp, RFC 3339 in UTC with milliseconds,
//	            e.g. "2024-01-02T03:04:05.678Z" (the form the CXone
//	            contract takes); null when the record has none
//
// $ENV and env are empty objects: a program cannot read the process
// environment (and so no secret of the worker's). input, inputs,
// input_filename, debug, stderr and modules (import, include) are not
// available: a program using them does not compile.
//
// Numbers keep their precision: the value is decoded with
// json.Decoder.UseNumber, and a number the program passes through unchanged
// (an id like 12345678901234567890) is written back exactly as it came.
// Arithmetic follows gojq: integers of any size are exact, other numbers
// are float64.
package transform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/itchyny/gojq"
	segjson "github.com/segmentio/encoding/json"

	"github.com/cxbridge/cxbridge/internal/event"
)

// The reasons of an *Error: the DLQ reasons the caller records.
const (
	ReasonInvalidJSON     = event.ReasonInvalidJSON     // the record value is not JSON, or not UTF-8
	ReasonTransformFailed = event.ReasonTransformFailed // the program errored, ran too long, or did not yield exactly one object
)

// DefaultTimeout bounds the time one Event may run a program. A mapping
// takes microseconds; a program that loops (def f: f; f) or walks a huge
// range is stopped and the record fails with ReasonTransformFailed instead
// of wedging its partition.
const DefaultTimeout = time.Second

// Error is why a record could not be transformed. Reason is ReasonInvalidJSON
// or ReasonTransformFailed; Msg says what happened.
type Error struct {
	Reason event.Reason
	Msg    string
	Err    error // gojq's or encoding/json's error, when there is one (never a context error)
}

func (e *Error) Error() string { return "transform: " + e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// CompileError is a program that does not compile. Line and Column (both
// from 1; Column counts characters) locate a syntax error; they are 0 for
// other errors (an unknown function or variable), whose message names the
// culprit.
type CompileError struct {
	Line, Column int
	Msg          string // gojq's message
	Err          error
}

func (e *CompileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("invalid jq program at line %d, column %d: %s", e.Line, e.Column, e.Msg)
	}
	return "invalid jq program: " + e.Msg
}

func (e *CompileError) Unwrap() error { return e.Err }

// Input is what a program sees of a record besides its value.
type Input struct {
	event.Record           // topic, partition, offset, headers
	Key          []byte    // nil or empty: $key is ""
	Timestamp    time.Time // zero: $timestamp is null
}

// Program is a compiled jq program. It is safe for concurrent use.
type Program struct {
	code    *gojq.Code
	timeout time.Duration
}

// Option configures Compile.
type Option func(*Program)

// WithTimeout sets the time one Event may run the program (DefaultTimeout
// when not given; d <= 0 means no bound but the caller's context).
func WithTimeout(d time.Duration) Option {
	return func(p *Program) { p.timeout = d }
}

// The variables a program sees, in the order run passes their values.
var variables = []string{"$key", "$headers", "$topic", "$partition", "$offset", "$timestamp"}

// Compile parses and compiles program. Errors are *CompileError.
func Compile(program string, opts ...Option) (*Program, error) {
	q, err := gojq.Parse(program)
	if err != nil {
		ce := &CompileError{Msg: err.Error(), Err: err}
		var pe *gojq.ParseError
		if errors.As(err, &pe) {
			ce.Line, ce.Column = position(program, pe.Offset-len(pe.Token))
		}
		return nil, ce
	}
	code, err := gojq.Compile(q, gojq.WithVariables(variables))
	if err != nil {
		return nil, &CompileError{Msg: err.Error(), Err: err}
	}
	p := &Program{code: code, timeout: DefaultTimeout}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// position returns the line and column (from 1, in characters) of byte
// offset off of src.
func position(src string, off int) (line, column int) {
	off = max(0, min(off, len(src)))
	before := src[:off]
	line = strings.Count(before, "\n") + 1
	if i := strings.LastIndexByte(before, '\n'); i >= 0 {
		before = before[i+1:]
	}
	return line, utf8.RuneCountInString(before) + 1
}

// Event runs the program on a record value and checks the object it yields
// as the event, as event.Decode checks an untransformed record value (same
// rules, reasons and messages; ids filled from the record the same way),
// without encoding the object and parsing it again: what the worker does
// with a mapped record.
//
// A record the program cannot map is an *Error (see Reason): the record is
// settled by dead-lettering it. An object that is no valid event is an
// *event.Error. When ctx ends first, the error wraps ctx's and is neither:
// the record was not judged and must not be dead-lettered for it. An *Error
// never wraps a context error.
func (p *Program) Event(ctx context.Context, value []byte, in Input) (*event.Event, error) {
	out, err := p.run(ctx, value, in)
	if err != nil {
		return nil, err
	}
	return event.DecodeObject(out, gojq.Marshal, in.Record)
}

// run runs the program on a record value: the one object it yields.
func (p *Program) run(ctx context.Context, value []byte, in Input) (map[string]any, error) {
	v, err := decode(value)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if p.timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, p.timeout)
	}
	defer cancel()
	iter := p.code.RunWithContext(runCtx, v,
		validUTF8(string(in.Key)),
		headers(in.Headers),
		in.Topic,
		in.Partition,
		int(in.Offset), // gojq's integers are int (64 bits here)
		timestamp(in.Timestamp),
	)
	var out any
	n := 0
	for {
		x, ok := iter.Next()
		if !ok {
			break
		}
		if err, isErr := x.(error); isErr {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("transform: %w", ctx.Err())
			}
			if errors.Is(err, context.DeadlineExceeded) && runCtx.Err() != nil {
				// Err stays nil: an *Error must never read as the
				// caller's context ending (errors.Is(err,
				// context.DeadlineExceeded)), or a caller could leave the
				// record unsettled and retry it for ever.
				return nil, &Error{Reason: ReasonTransformFailed, Msg: fmt.Sprintf("program stopped after running %v", p.timeout)}
			}
			return nil, &Error{Reason: ReasonTransformFailed, Msg: err.Error(), Err: err}
		}
		if n++; n == 1 {
			out = x
		} else if n > maxCounted {
			break
		}
	}
	switch {
	case n == 0:
		return nil, &Error{Reason: ReasonTransformFailed, Msg: "program yielded no value, want one object"}
	case n > maxCounted:
		return nil, &Error{Reason: ReasonTransformFailed, Msg: fmt.Sprintf("program yielded more than %d values, want one object", maxCounted)}
	case n > 1:
		return nil, &Error{Reason: ReasonTransformFailed, Msg: fmt.Sprintf("program yielded %d values, want one object", n)}
	}
	obj, ok := out.(map[string]any)
	if !ok {
		return nil, &Error{Reason: ReasonTransformFailed, Msg: fmt.Sprintf("program yielded %s, want an object", kind(out))}
	}
	return obj, nil
}

// maxCounted is how many values run counts before it stops a program
// that yields too many (repeat(.) yields without end).
const maxCounted = 100

// decode parses a record value as exactly one JSON value, its numbers as
// json.Number (which gojq takes as they are).
//
// A value that nests at most fastDepth levels is parsed with
// github.com/segmentio/encoding/json, which takes what encoding/json takes
// and builds the same values at about half the time and garbage
// (TestDecodeAgreesWithEncodingJSON, FuzzDecode); a deeper value, or one it
// refuses, is parsed with encoding/json (whose errors are reported).
func decode(value []byte) (any, error) {
	if !utf8.Valid(value) { // json.Decoder would replace the bytes silently
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: "record value is not valid UTF-8"}
	}
	if v, ok := decodeFast(value); ok {
		return v, nil
	}
	return decodeStd(value)
}

// decodeFast is decode with github.com/segmentio/encoding/json; ok is false
// when value is not exactly one JSON value, or nests deeper than
// fastDepth.
func decodeFast(value []byte) (v any, ok bool) {
	if !shallow(value, fastDepth) {
		return nil, false
	}
	rest, err := segjson.Parse(value, &v, segjson.UseNumber)
	return v, err == nil && len(bytes.TrimLeft(rest, " \t\r\n")) == 0
}

// fastDepth is the deepest nesting decodeFast parses. Its parser's time
// grows with the value's size times its depth: 5 times encoding/json's for
// 850 KB at a depth of 64, 10,000 times for 20 KB at 10,000 (seconds).
// Events nest a few levels; up to 8 it is faster, beyond it encoding/json
// parses.
const fastDepth = 8

// shallow reports whether value's arrays and objects nest at most max
// levels deep.
func shallow(value []byte, max int) bool {
	depth, inString := 0, false
	for i := 0; i < len(value); i++ {
		switch c := value[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			if depth++; depth > max {
				return false
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return true
}

// decodeStd is decode with encoding/json, for its errors.
func decodeStd(value []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Reason: ReasonInvalidJSON, Msg: "record value is empty, want JSON", Err: err}
		}
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: "record value is not valid JSON: " + err.Error(), Err: err}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: fmt.Sprintf("record value is not valid JSON: more after the value at offset %d", dec.InputOffset())}
	}
	return v, nil
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func headers(hs []event.Header) map[string]any {
	m := make(map[string]any, len(hs))
	for _, h := range hs { // the last one wins
		m[validUTF8(h.Key)] = validUTF8(string(h.Value))
	}
	return m
}

func timestamp(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// kind names a jq value's type with its article: "a string", "null".
func kind(v any) string {
	switch t := gojq.TypeOf(v); t {
	case "null":
		return "null"
	case "array", "object":
		return "an " + t
	default:
		return "a " + t
	}
}
