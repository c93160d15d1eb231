# Vitis HLS (Tcl flow) for mmfree_kernel: csim, csynth, cosim, export to the IP catalog.
# Run through `make hls BOARD=<board>` (hls/scripts/run_vitis_hls.sh), which sets:
#   MMFREE_PART, MMFREE_CLOCK_MHZ, MMFREE_BOARD_INC (folder of mmfree_board.h),
#   MMFREE_VECTORS (golden vector files for the testbench), MMFREE_STEPS (csim csynth cosim export)
# Not exercised on the development machines (no Vitis there); mirrors the Vitis HLS examples.
set hls_dir [file normalize [file dirname [info script]]/..]
set part    $::env(MMFREE_PART)
set clk_mhz $::env(MMFREE_CLOCK_MHZ)
set inc     $::env(MMFREE_BOARD_INC)
set vectors $::env(MMFREE_VECTORS)
set steps   $::env(MMFREE_STEPS)
# -ffp-contract=off: never fuse a*b+c (the golden model rounds each operation once); MMFREE_COSIM: the m_axi
# depths of the vectors' shape (mmfree_cosim.h from gen_vectors.py)
set cflags  "-std=c++14 -ffp-contract=off -DMMFREE_COSIM -I$inc -I$hls_dir/include -I$hls_dir/mmfree_kernel"

open_project -reset mmfree_kernel_prj
set_top mmfree_kernel
add_files $hls_dir/mmfree_kernel/mmfree_kernel.cpp -cflags $cflags
add_files -tb $hls_dir/tb/tb_mmfree.cpp -cflags "$cflags -Wno-unknown-pragmas" -csimflags "-Wno-unknown-pragmas"
open_solution -reset sol1 -flow_target vivado
set_part $part
create_clock -period [expr {1000.0 / $clk_mhz}] -name default
config_interface -m_axi_addr64
# bit-exact floats: no fused multiply-add or accumulator cores (UG1399 config_op; RTL must round as C-sim)
config_op fmadd -impl none
config_op fmacc -impl none
config_op facc -impl none
config_export -format ip_catalog -vendor xilinx.com -library hls -ipname mmfree_kernel -version 1.0 \
    -description "mmfree ternary HGRN-Bit kernel (embed, layer, head, whole token)"

if {[lsearch $steps csim] >= 0}   { csim_design -argv $vectors }
if {[lsearch $steps csynth] >= 0} { csynth_design }
# co-simulation compares the buffers the RTL wrote (no C trace of the kernel body exists there)
if {[lsearch $steps cosim] >= 0}  { cosim_design -argv "--outputs-only $vectors" -trace_level none }
if {[lsearch $steps export] >= 0} { export_design -format ip_catalog -vendor xilinx.com -library hls \
                                        -ipname mmfree_kernel -version 1.0 }
exit
