package gguf

import (
	"errors"
	"reflect"
	"testing"
)

// TestParseHeaderFromPrefix: every prefix that ends inside the header is reported as truncated
// (so a downloader knows to read more), and the first prefix that holds the whole header yields
// exactly the metadata and tensor table Parse finds in the complete image, without tensor data.
func TestParseHeaderFromPrefix(t *testing.T) {
	img := tinyModel(t)
	full, err := Parse(img)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(img))
	for n := 0; n < int(full.DataOffset); n++ {
		f, err := ParseHeader(img[:n], size)
		if err == nil {
			// The tensor table can end before the alignment padding does.
			if reflect.DeepEqual(f.KVs, full.KVs) && reflect.DeepEqual(f.Tensors, full.Tensors) && f.DataOffset == full.DataOffset {
				continue
			}
			t.Fatalf("prefix %d: parsed a header that differs from the full parse", n)
		}
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix %d: %v, want a truncation error", n, err)
		}
	}
	f, err := ParseHeader(img[:full.DataOffset], size)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.KVs, full.KVs) || !reflect.DeepEqual(f.Tensors, full.Tensors) || f.Alignment != full.Alignment {
		t.Fatal("header parse differs from full parse")
	}
	if f.TensorData(&f.Tensors[0]) != nil {
		t.Fatal("a header-only file returned tensor data")
	}
	// Tensor extents are checked against the declared file size, not the prefix.
	if _, err := ParseHeader(img[:full.DataOffset], size-1); !errors.Is(err, ErrTruncated) {
		t.Fatalf("file one byte short: %v", err)
	}
	if _, err := ParseHeader(img, size-1); err == nil {
		t.Fatal("prefix longer than the file was accepted")
	}
}
