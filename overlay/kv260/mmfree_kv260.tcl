# Vivado block design of the mmfree overlay for kv260 (IP Integrator).
#
#   vivado -mode batch -notrace -source mmfree_kv260.tcl        (or: make, which also builds the bitstream)
#
# Board numbers (part, PS, HP ports, clock, address map) come from build/board_params.tcl, generated
# from python/mmfree/data/boards.json; the design itself is overlay/common/mmfree_bd.tcl.
# Expects an open project with the board part and the mmfree_kernel IP repository set
# (overlay/common/build_bitstream.tcl does that); sourced alone it creates that project.
set mmfree_board_dir [file dirname [file normalize [info script]]]
source [file join $mmfree_board_dir build board_params.tcl]
source [file join $mmfree_board_dir .. common mmfree_bd.tcl]
source [file join $mmfree_board_dir .. common mmfree_project.tcl]

::mmfree::check_vivado_version
if {[llength [get_projects -quiet]] == 0} {
    ::mmfree::new_project [file join $mmfree_board_dir build vivado]
}
::mmfree::create_bd $MMFREE(overlay_name)
