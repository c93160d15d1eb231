# mmfree Vivado project: part, board part (+ carrier connection on Kria), HLS IP repository.
# Reads the array MMFREE (build/board_params.tcl). Tcl 8.5 compatible.

namespace eval mmfree {}

# The board part of boards.json, or the newest installed file version of the same board (with a
# warning); an error naming where to get the board files when none is installed.
proc ::mmfree::resolve_board_part {} {
    global MMFREE
    catch {set_param board.repoPaths [get_property LOCAL_ROOT_DIR [xhub::get_xstores xilinx_board_store]]}
    set want $MMFREE(board_part)
    if {[llength [get_board_parts -quiet $want]] > 0} {
        return $want
    }
    set parts [split $want :]
    set pattern "[lindex $parts 0]:[lindex $parts 1]:[lindex $parts 2]:*"
    set found [get_board_parts -quiet -latest_file_version $pattern]
    if {[llength $found] > 0} {
        set got [lindex $found 0]
        puts "WARNING: mmfree: board part $want not installed; using $got"
        return $got
    }
    error "mmfree: board part $want is not installed. Board files: $MMFREE(board_files). In Vivado: Tools > Vivado Store > Boards, or xhub::install \[xhub::get_xitems *[lindex $parts 1]*\]."
}

proc ::mmfree::new_project {dir} {
    global MMFREE
    create_project -force $MMFREE(overlay_name) $dir -part $MMFREE(part)
    set_property board_part [::mmfree::resolve_board_part] [current_project]
    if {$MMFREE(board_connections) ne ""} {
        set_property board_connections $MMFREE(board_connections) [current_project]
    }
    if {$MMFREE(ip_repo) eq ""} {
        error "mmfree: no mmfree_kernel IP export for $MMFREE(board) (board_params.tcl ip_repo is empty): run make hls BOARD=$MMFREE(board) first"
    }
    set_property ip_repo_paths [list $MMFREE(ip_repo)] [current_project]
    update_ip_catalog -rebuild
    if {[llength [get_ipdefs -all $MMFREE(kernel_vlnv)]] == 0} {
        error "mmfree: $MMFREE(kernel_vlnv) not found in $MMFREE(ip_repo) (HLS export for another part or Vitis version?)"
    }
}
