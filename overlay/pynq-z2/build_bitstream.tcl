# Bitstream of the mmfree overlay for pynq-z2: project, block design, wrapper, synthesis,
# implementation, timing gate (fails on negative WNS/WHS), write_bitstream, copy .bit + .hwh to
# build/out/mmfree_pynq_z2.{bit,hwh}.   vivado -mode batch -notrace -source build_bitstream.tcl
set mmfree_board_dir [file dirname [file normalize [info script]]]
source [file join $mmfree_board_dir .. common build_bitstream.tcl]
::mmfree::build_bitstream $mmfree_board_dir
