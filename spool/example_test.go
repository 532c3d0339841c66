package spool_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/spool-agent/spool-agent/spool"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	s, err := spool.Create(filepath.Join(dir, "spool"), []string{"active", "frozen"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	r, err := s.NewReader("active")
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	if _, err := s.EnqueueBytes(ctx, "active", []byte("send_now"), []byte("Subject: hi\r\n\r\nhello\r\n"), spool.EnqueueOptions{}); err != nil {
		log.Fatal(err)
	}

	c, err := r.Dequeue(ctx)
	if err != nil {
		log.Fatal(err)
	}
	data, _ := c.ReadData()
	fmt.Printf("%s: %d bytes\n", c.Metadata(), len(data))
	// Delivery failed for now: freeze it with new metadata.
	if err := c.Save("frozen", []byte("frozen")); err != nil {
		log.Fatal(err)
	}
	names, _ := s.List("frozen")
	fmt.Println(len(names), "frozen")
	// Output:
	// send_now: 22 bytes
	// 1 frozen
}

func ExampleTyped() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	s, err := spool.Create(filepath.Join(dir, "spool"), []string{"jobs"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	type job struct {
		Kind     string
		Attempts int
	}
	jobs := spool.NewTyped[job](s, spool.JSONCodec[job]{})
	name, err := jobs.EnqueueBytes(ctx, "jobs", job{Kind: "resize"}, nil, spool.EnqueueOptions{})
	if err != nil {
		log.Fatal(err)
	}
	err = jobs.WithEntry(ctx, "jobs", name, func(c *spool.TypedCheckout[job]) (spool.TypedAction[job], error) {
		c.Meta.Attempts++
		return spool.TypedSaveTo("jobs", c.Meta), nil
	})
	if err != nil {
		log.Fatal(err)
	}
	j, _ := jobs.ReadMetadata("jobs", name)
	fmt.Printf("%+v\n", j)
	// Output: {Kind:resize Attempts:1}
}

func ExampleSpool_Recover() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	s, err := spool.Create(filepath.Join(dir, "spool"), []string{"q"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// At start-up, return the entries of workers that died holding them.
	// Live workers' entries are locked and stay where they are.
	recovered, err := s.Recover(context.Background(), 0, spool.RecoverOptions{WorkersStopped: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(recovered), "recovered")
	// Output: 0 recovered
}
