package spool

import (
	"context"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	dir := t.TempDir() + "/spool"
	s, err := Create(dir, []string{"queue1", "queue2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	name, err := s.EnqueueBytes(context.Background(), "queue1", []byte("meta"), []byte("data"), EnqueueOptions{Names: PrefixNames("q1_")})
	if err != nil || name != "q1_000000" {
		t.Fatal(name, err)
	}
	r, _ := s.NewReader("queue1")
	defer r.Close()
	c, err := r.Dequeue(context.Background())
	if err != nil || string(c.Metadata()) != "meta" {
		t.Fatal(err)
	}
	if err := c.Save("queue2", []byte("m2")); err != nil {
		t.Fatal(err)
	}
	r2, _ := s.NewReader("queue2")
	defer r2.Close()
	got := make(chan string)
	go func() {
		c, err := r2.Dequeue(context.Background())
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(c.Metadata())
		c.Remove()
	}()
	if m := <-got; m != "m2" {
		t.Fatal(m)
	}
	r3, _ := s.NewReader("queue1")
	go func() {
		time.Sleep(50 * time.Millisecond)
		s.EnqueueBytes(context.Background(), "queue1", []byte("late"), nil, EnqueueOptions{})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err = r3.Dequeue(ctx)
	if err != nil || string(c.Metadata()) != "late" {
		t.Fatal(err)
	}
	c.Remove()
	r3.Close()
}
