/* The converse of mkl_non_intel.c: oneMKL's vendor check answers "Intel" on any CPU, so that on an
 * AMD machine MKL takes the dispatch it would take on an Intel one (tests/test_determinism.py). */
int mkl_serv_intel_cpu_true(void) { return 1; }
int mkl_serv_intel_cpu(void) { return 1; }
