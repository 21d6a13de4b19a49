package ggml

import "testing"

func TestBlockGeometryMatchesFormat(t *testing.T) {
	// Sizes from the GGUF specification's block structs.
	want := map[Type][2]int{
		Q4_0: {32, 18}, Q4_1: {32, 20}, Q5_0: {32, 22}, Q5_1: {32, 24}, Q8_0: {32, 34},
		Q2_K: {256, 84}, Q3_K: {256, 110}, Q4_K: {256, 144}, Q5_K: {256, 176}, Q6_K: {256, 210}, Q8_K: {256, 292},
		F32: {1, 4}, F16: {1, 2}, BF16: {1, 2},
	}
	for ty, w := range want {
		if ty.BlockSize() != w[0] || ty.TypeSize() != w[1] {
			t.Errorf("%s: block %d size %d, want %d %d", ty, ty.BlockSize(), ty.TypeSize(), w[0], w[1])
		}
	}
}

func TestRowSizeRejectsPartialBlocks(t *testing.T) {
	if _, err := Q4_K.RowSize(172); err == nil {
		t.Fatal("172 elements of Q4_K accepted")
	}
	if n, err := Q8_0.RowSize(64); err != nil || n != 68 {
		t.Fatalf("Q8_0 row of 64 = %d, %v", n, err)
	}
	if _, err := Type(99).RowSize(32); err == nil {
		t.Fatal("unknown type accepted")
	}
}

func TestParse(t *testing.T) {
	for _, ty := range All() {
		got, err := Parse(ty.String())
		if err != nil || got != ty {
			t.Errorf("Parse(%s) = %v, %v", ty, got, err)
		}
	}
	if got, _ := Parse("q4_k"); got != Q4_K {
		t.Errorf("lower case not accepted")
	}
	if _, err := Parse("Q9_9"); err == nil {
		t.Error("bogus name accepted")
	}
}
