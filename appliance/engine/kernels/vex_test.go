package kernels

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// legacySSE names the SSE mnemonics the amd64 kernels could pick up by habit; their VEX forms
// (a V in front) do the same work.
var legacySSE = regexp.MustCompile(`^(MOVSS|MOVUPS|MOVAPS|MOVOU|MOVOA|MOVO|PXOR|XORPS|ADDSS|MULSS|SUBSS|DIVSS|ADDPS|MULPS|SHUFPS|CVT\w+|PSHUF\w+|PADD\w+|PMADD\w+|PINSR\w|PEXTR\w|PUNPCK\w+)$`)

var vectorReg = regexp.MustCompile(`\b[XYZ]\d+\b`)

// TestAMD64KernelsUseOnlyVEXEncodings reads the amd64 assembly and fails on any instruction
// that touches a vector register in a legacy SSE encoding (MOVL AX, X5 rather than VMOVD AX,
// X5). Between AVX instructions, with the upper halves of the YMM registers in use, such an
// instruction is slow everywhere and ruinous on some hosts: on a Zen 3 EPYC under KVM each one
// that wrote an XMM register cost about 350 cycles, which made the Q8_0 cache's attention
// kernels, with one in every block, 30 to 60 times slower than their VEX forms.
func TestAMD64KernelsUseOnlyVEXEncodings(t *testing.T) {
	var files []string
	for _, pat := range []string{"*_amd64.s", "*_amd64.h"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no amd64 assembly found beside the test")
	}
	checked := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if c := strings.Index(line, "//"); c >= 0 {
				line = line[:c]
			}
			line = strings.TrimSuffix(strings.TrimSpace(line), "\\")
			if strings.HasPrefix(line, "#") {
				continue
			}
			for _, ins := range strings.Split(line, ";") {
				fields := strings.Fields(ins)
				if len(fields) == 0 {
					continue
				}
				op := fields[0]
				if strings.HasSuffix(op, ":") || strings.Contains(op, "(") {
					continue // a label or a macro, whose body is checked where it is defined
				}
				if strings.ToUpper(op) != op {
					continue // a macro's parameter, an instruction its callers name (checked there)
				}
				checked++
				operands := strings.Join(fields[1:], " ")
				vex := strings.HasPrefix(op, "V") || strings.HasPrefix(op, "K")
				if legacySSE.MatchString(op) || (!vex && vectorReg.MatchString(operands)) {
					t.Errorf("%s:%d: %s: a legacy SSE encoding among AVX code; use its VEX form", f, i+1, strings.TrimSpace(ins))
				}
			}
		}
	}
	t.Logf("%d instructions in %d files", checked, len(files))
}
