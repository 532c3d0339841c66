package spool

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
)

// Codec turns metadata of type M into bytes and back. The raw API works on
// bytes because an agent must handle spools whose metadata format it does
// not know; programs that do know it use Typed with a Codec.
type Codec[M any] interface {
	Marshal(M) ([]byte, error)
	Unmarshal([]byte) (M, error)
}

// JSONCodec encodes metadata as JSON.
type JSONCodec[M any] struct{}

// Marshal implements Codec.
func (JSONCodec[M]) Marshal(m M) ([]byte, error) { return json.Marshal(m) }

// Unmarshal implements Codec.
func (JSONCodec[M]) Unmarshal(b []byte) (M, error) {
	var m M
	err := json.Unmarshal(b, &m)
	return m, err
}

// DecodeError reports an entry whose metadata the codec could not decode.
// Such an entry is never passed on as an M; whoever would have finished it
// still does:
//
//   - Typed.Checkout, TypedReader.Dequeue and DequeueAvailable return it
//     held in Checkout (releasing it would deliver it again: save it into a
//     quarantine queue, or remove it);
//   - WithEntry, Iter and IterAvailable, which finish entries themselves,
//     put it back unchanged, return the DecodeError with Checkout nil, and
//     stop. To get past it, Spool.Move it away and call again.
type DecodeError struct {
	Queue    string
	Name     string
	Checkout *Checkout
	Err      error
}

// Error says which entry's metadata did not decode, and why.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode metadata of %s in queue %s: %v", e.Name, e.Queue, e.Err)
}

// Unwrap returns the codec's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Typed is a Spool whose metadata has type M, encoded by Codec.
type Typed[M any] struct {
	Spool *Spool
	Codec Codec[M]
}

// NewTyped returns the typed view of s with codec c.
func NewTyped[M any](s *Spool, c Codec[M]) *Typed[M] {
	return &Typed[M]{Spool: s, Codec: c}
}

func (t *Typed[M]) encode(m M) ([]byte, error) {
	b, err := t.Codec.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return b, nil
}

// Enqueue is Spool.Enqueue with typed metadata.
func (t *Typed[M]) Enqueue(ctx context.Context, queue string, m M, data io.Reader, o EnqueueOptions) (string, error) {
	b, err := t.encode(m)
	if err != nil {
		return "", err
	}
	return t.Spool.Enqueue(ctx, queue, b, data, o)
}

// EnqueueBytes is Spool.EnqueueBytes with typed metadata.
func (t *Typed[M]) EnqueueBytes(ctx context.Context, queue string, m M, data []byte, o EnqueueOptions) (string, error) {
	b, err := t.encode(m)
	if err != nil {
		return "", err
	}
	return t.Spool.EnqueueBytes(ctx, queue, b, data, o)
}

// ReadMetadata reads and decodes the metadata of entry name in queue without
// claiming it.
func (t *Typed[M]) ReadMetadata(queue, name string) (M, error) {
	b, err := t.Spool.ReadMetadata(queue, name)
	if err != nil {
		var zero M
		return zero, err
	}
	m, err := t.Codec.Unmarshal(b)
	if err != nil {
		return m, &DecodeError{Queue: queue, Name: name, Err: err}
	}
	return m, nil
}

// WriteMetadata is Spool.WriteMetadata with typed metadata.
func (t *Typed[M]) WriteMetadata(queue, name string, m M) error {
	b, err := t.encode(m)
	if err != nil {
		return err
	}
	return t.Spool.WriteMetadata(queue, name, b)
}

// TypedCheckout is a Checkout with its decoded metadata.
type TypedCheckout[M any] struct {
	*Checkout
	codec Codec[M]
	// Meta is the metadata decoded at checkout.
	Meta M
}

// Save encodes m and saves the entry with it into queue (see Checkout.Save).
func (c *TypedCheckout[M]) Save(queue string, m M) error {
	b, err := c.codec.Marshal(m)
	if err != nil {
		return fmt.Errorf("save %s: encode metadata: %w", c.Name(), err)
	}
	return c.Checkout.Save(queue, b)
}

// decode wraps c with its decoded metadata; on failure the DecodeError
// holds c, which the caller still owns.
func decode[M any](codec Codec[M], c *Checkout) (*TypedCheckout[M], error) {
	m, err := codec.Unmarshal(c.Metadata())
	if err != nil {
		return nil, &DecodeError{Queue: c.Queue(), Name: c.Name(), Checkout: c, Err: err}
	}
	return &TypedCheckout[M]{Checkout: c, codec: codec, Meta: m}, nil
}

// Checkout is Spool.Checkout with the metadata decoded. A *DecodeError
// holds the checkout, which the caller finishes (see DecodeError).
func (t *Typed[M]) Checkout(ctx context.Context, queue, name string) (*TypedCheckout[M], error) {
	c, err := t.Spool.Checkout(ctx, queue, name)
	if err != nil {
		return nil, err
	}
	return decode(t.Codec, c)
}

// TypedAction is Action for typed callbacks: [TypedKeep], [TypedSaveTo] or
// [TypedRemove]. The zero TypedAction is TypedKeep("").
type TypedAction[M any] struct {
	action Action
	meta   *M // nil: metadata unchanged
}

// TypedKeep is Keep: the entry goes into queue ("" for the queue it came
// from) with its metadata unchanged.
func TypedKeep[M any](queue string) TypedAction[M] {
	return TypedAction[M]{action: Keep(queue)}
}

// TypedSaveTo is SaveTo: the entry goes into queue ("" for the queue it came
// from) with metadata m.
func TypedSaveTo[M any](queue string, m M) TypedAction[M] {
	return TypedAction[M]{action: Keep(queue), meta: &m}
}

// TypedRemove is Remove: the entry is removed.
func TypedRemove[M any]() TypedAction[M] { return TypedAction[M]{action: Remove()} }

// typedFunc adapts a typed callback to the raw one. A decoding failure
// skips f and returns a *DecodeError with Checkout nil: the raw layer
// (Checkout.run) then releases the entry, as for any error of f.
func typedFunc[M any](codec Codec[M], f func(*TypedCheckout[M]) (TypedAction[M], error)) func(*Checkout) (Action, error) {
	return func(c *Checkout) (Action, error) {
		tc, err := decode(codec, c)
		if err != nil {
			err.(*DecodeError).Checkout = nil
			return Action{}, err
		}
		ta, err := f(tc)
		if err != nil {
			return Action{}, err
		}
		a := ta.action
		if ta.meta != nil {
			b, err := codec.Marshal(*ta.meta)
			if err != nil {
				return Action{}, fmt.Errorf("encode metadata of %s: %w", c.Name(), err)
			}
			a.metadata = b
		}
		return a, nil
	}
}

// WithEntry is Spool.WithEntry with typed metadata. An entry whose metadata
// does not decode is put back, and WithEntry returns the *DecodeError (see
// DecodeError).
func (t *Typed[M]) WithEntry(ctx context.Context, queue, name string, f func(*TypedCheckout[M]) (TypedAction[M], error)) error {
	return t.Spool.WithEntry(ctx, queue, name, typedFunc(t.Codec, f))
}

// TypedReader is a Reader that decodes metadata.
type TypedReader[M any] struct {
	*Reader
	codec Codec[M]
}

// NewReader returns a typed reader of queue.
func (t *Typed[M]) NewReader(queue string) (*TypedReader[M], error) {
	r, err := t.Spool.NewReader(queue)
	if err != nil {
		return nil, err
	}
	return &TypedReader[M]{Reader: r, codec: t.Codec}, nil
}

// Dequeue is Reader.Dequeue with the metadata decoded. A *DecodeError holds
// the checkout, which the caller finishes (see DecodeError).
func (r *TypedReader[M]) Dequeue(ctx context.Context) (*TypedCheckout[M], error) {
	c, err := r.Reader.Dequeue(ctx)
	if err != nil {
		return nil, err
	}
	return decode(r.codec, c)
}

// DequeueAvailable is Reader.DequeueAvailable with the metadata decoded: nil,
// nil when nothing is available. A *DecodeError holds the checkout, which
// the caller finishes (see DecodeError).
func (r *TypedReader[M]) DequeueAvailable() (*TypedCheckout[M], error) {
	c, err := r.Reader.DequeueAvailable()
	if c == nil || err != nil {
		return nil, err
	}
	return decode(r.codec, c)
}

// Iter is Reader.Iter with typed metadata. An entry whose metadata does not
// decode is put back, and Iter returns the *DecodeError (see DecodeError).
func (r *TypedReader[M]) Iter(ctx context.Context, f func(*TypedCheckout[M]) (TypedAction[M], error)) error {
	return r.Reader.Iter(ctx, typedFunc(r.codec, f))
}

// IterAvailable is Reader.IterAvailable with typed metadata. An entry whose
// metadata does not decode is put back, and IterAvailable returns the
// *DecodeError (see DecodeError).
func (r *TypedReader[M]) IterAvailable(ctx context.Context, f func(*TypedCheckout[M]) (TypedAction[M], error)) error {
	return r.Reader.IterAvailable(ctx, typedFunc(r.codec, f))
}
