/* Makes oneMKL take its non-Intel dispatch on an Intel CPU, so a test here sees what an AMD
 * machine's MKL would do: MKL asks these two (exported by torch's libtorch_cpu.so) whether the
 * CPU is Intel's; LD_PRELOAD of this library answers no. Used by tests/test_verify.py and the
 * e2e rebuild (determinism.cpu_kernels: portable must not depend on the answer). */
int mkl_serv_intel_cpu_true(void) { return 0; }
int mkl_serv_intel_cpu(void) { return 0; }
