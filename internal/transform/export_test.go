package transform

import (
	"context"

	"github.com/itchyny/gojq"
)

// Apply runs the program on a record value and returns the JSON encoding of
// the one object it yields, errors as from Event: what the worker did before
// Event checked the object directly, kept for the tests that compare the two
// and read the program's output as JSON.
func (p *Program) Apply(ctx context.Context, value []byte, in Input) ([]byte, error) {
	out, err := p.run(ctx, value, in)
	if err != nil {
		return nil, err
	}
	return gojq.Marshal(out)
}
