# mmfree block design procedures, shared by overlay/<board>/mmfree_<board>.tcl.
#
# Every board number comes from the array MMFREE (overlay/<board>/build/board_params.tcl, generated
# from python/mmfree/data/boards.json by overlay/scripts/gen_board_params.py). Nothing here is
# board-specific except the two PS flavours: zynq_ultra_ps_e (Zynq UltraScale+) and
# processing_system7 (Zynq-7000).
#
# The design:
#   PS (board preset) -- PL clock 0 from the IO PLL at MMFREE(clock_mhz), one clock domain
#   PS master (M_AXI_HPM0_FPD / M_AXI_GP0) -> SmartConnect -> mmfree_kernel s_axi_control @ ctrl_base
#                                                         -> axi_intc (optional) @ intc_base
#   mmfree_kernel m_axi_gmem_w<i> -> SmartConnect -> HP port i (S_AXI_HP<i>_FPD 128-bit / S_AXI_HP<i> 64-bit)
#   mmfree_kernel m_axi_gmem_io + m_axi_gmem_emb -> SmartConnect -> io HP port (S_AXI_HPC0_FPD / S_AXI_HP2)
#   kernel interrupt -> axi_intc -> pl_ps_irq0 / IRQ_F2P (PYNQ's convention: all PL interrupts through an INTC)
#   proc_sys_reset on pl_resetn0 / FCLK_RESET0_N
# Every m_axi address space maps the board's whole DDR (every ddr_segments entry), so any physical
# address pynq.allocate returns is reachable from every port.
#
# Tcl 8.5 (Vivado) compatible; tests/test_overlay.py sources this with stub Vivado commands.

namespace eval mmfree {
    variable ps_cell ps_0
    variable kernel_cell mmfree_kernel_0
    variable intc_cell axi_intc_0
    variable reset_cell rst_ps_0
}

# Latest VLNV of a Xilinx catalog IP (e.g. zynq_ultra_ps_e -> xilinx.com:ip:zynq_ultra_ps_e:3.4),
# so one script serves Vivado 2022.1 and 2024.1.
proc ::mmfree::ipdef {name} {
    set defs [get_ipdefs -all -filter "NAME == $name && VLNV =~ xilinx.com:ip:*"]
    if {[llength $defs] == 0} {
        error "mmfree: IP $name is not in the Vivado IP catalog"
    }
    return [lindex [lsort -dictionary $defs] end]
}

# Stop unless this Vivado is the one of the board's PYNQ image (HWH parsers and IP versions are
# version-locked). MMFREE_ANY_VIVADO=1 in the environment turns the error into a warning.
proc ::mmfree::check_vivado_version {} {
    global MMFREE
    set want $MMFREE(vivado_version)
    set have [version -short]
    if {[string first $want $have] != 0} {
        set msg "mmfree: overlay $MMFREE(overlay_name) is built with Vivado $want (the Vivado of the board's image: $MMFREE(pynq_image)); this is Vivado $have."
        if {[info exists ::env(MMFREE_ANY_VIVADO)] && $::env(MMFREE_ANY_VIVADO) eq "1"} {
            puts "WARNING: $msg Continuing (MMFREE_ANY_VIVADO=1)."
        } else {
            error "$msg Use Vivado $want, or set MMFREE_ANY_VIVADO=1 to try anyway."
        }
    }
    return $have
}

# --- Zynq UltraScale+ PS ------------------------------------------------------------------------
proc ::mmfree::create_ps_zynqmp {} {
    global MMFREE
    variable ps_cell
    set ps [create_bd_cell -type ip -vlnv [::mmfree::ipdef zynq_ultra_ps_e] $ps_cell]
    apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} [get_bd_cells $ps_cell]

    set clk [dict get $MMFREE(pl_clock) index]
    set m $MMFREE(ps_master)
    set cfg [list \
        CONFIG.PSU__FPGA_PL0_ENABLE {1} \
        CONFIG.PSU__CRL_APB__PL${clk}_REF_CTRL__SRCSEL [dict get $MMFREE(pl_clock) source] \
        CONFIG.PSU__CRL_APB__PL${clk}_REF_CTRL__FREQMHZ $MMFREE(clock_mhz) \
        CONFIG.PSU__FPGA_PL1_ENABLE {0} \
        CONFIG.PSU__FPGA_PL2_ENABLE {0} \
        CONFIG.PSU__FPGA_PL3_ENABLE {0} \
        CONFIG.[dict get $m enable] {1} \
        CONFIG.[dict get $m width_param] [dict get $m width] \
        CONFIG.PSU__USE__M_AXI_GP1 {0} \
        CONFIG.PSU__USE__M_AXI_GP2 {0} \
        CONFIG.[dict get $MMFREE(interrupt) enable] {1} \
        CONFIG.PSU__USE__IRQ1 {0} \
    ]
    foreach hp [concat $MMFREE(weight_hp_ports) [list $MMFREE(io_hp_port)]] {
        lappend cfg CONFIG.[dict get $hp enable] {1} CONFIG.[dict get $hp width_param] $MMFREE(port_bits)
    }
    set_property -dict $cfg $ps
    ::mmfree::check_pl_clock $ps CONFIG.PSU__CRL_APB__PL${clk}_REF_CTRL__ACT_FREQMHZ
    return $ps
}

# The clock Vivado really makes for PL clock 0 (ACT_FREQMHZ) must be the build's clock_mhz within 0.5 %:
# PYNQ programs IOPLL divisors only, so a frequency the PLL does not divide into (300 MHz from KV260's
# 1000 MHz IOPLL) comes out elsewhere (333.3 MHz) and the kernel would run untimed.
proc ::mmfree::check_pl_clock {ps prop} {
    global MMFREE
    set act [get_property $prop $ps]
    set want $MMFREE(clock_mhz)
    if {$act eq ""} {
        puts "WARNING: mmfree: $prop could not be read; PL clock 0 not checked against $want MHz"
        return
    }
    if {abs($act - $want) > 0.005 * $want} {
        set pll [dict get $MMFREE(pl_clock) pll_mhz]
        error "mmfree: PL clock 0 comes out at $act MHz, boards.json clock_mhz asks $want MHz: the PS makes PL clocks as\
 [dict get $MMFREE(pl_clock) source] $pll MHz / n and PYNQ writes only those divisors; set clock_mhz in\
 python/mmfree/data/boards.json to one of them ([format %.1f [expr {$pll / 3.0}]], [format %.1f [expr {$pll / 4.0}]],\
 [format %.1f [expr {$pll / 5.0}]] MHz ...) and rebuild from make hls"
    }
    puts "mmfree: PL clock 0 = $act MHz (boards.json clock_mhz $want)"
}

# --- Zynq-7000 PS -------------------------------------------------------------------------------
proc ::mmfree::create_ps_zynq7 {} {
    global MMFREE
    variable ps_cell
    set ps [create_bd_cell -type ip -vlnv [::mmfree::ipdef processing_system7] $ps_cell]
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
        -config {make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"} \
        [get_bd_cells $ps_cell]

    set clk [dict get $MMFREE(pl_clock) index]
    set cfg [list \
        CONFIG.PCW_EN_CLK${clk}_PORT {1} \
        CONFIG.PCW_FCLK${clk}_PERIPHERAL_CLKSRC [dict get $MMFREE(pl_clock) source] \
        CONFIG.PCW_FPGA${clk}_PERIPHERAL_FREQMHZ $MMFREE(clock_mhz) \
        CONFIG.PCW_EN_RST${clk}_PORT {1} \
        CONFIG.[dict get $MMFREE(ps_master) enable] {1} \
        CONFIG.PCW_USE_M_AXI_GP1 {0} \
        CONFIG.[dict get $MMFREE(interrupt) enable] {1} \
        CONFIG.PCW_IRQ_F2P_INTR {1} \
    ]
    foreach hp [concat $MMFREE(weight_hp_ports) [list $MMFREE(io_hp_port)]] {
        lappend cfg CONFIG.[dict get $hp enable] {1} CONFIG.[dict get $hp width_param] $MMFREE(port_bits)
    }
    set_property -dict $cfg $ps
    ::mmfree::check_pl_clock $ps CONFIG.PCW_ACT_FPGA${clk}_PERIPHERAL_FREQMHZ
    return $ps
}

proc ::mmfree::create_ps {} {
    global MMFREE
    switch -- $MMFREE(ps) {
        zynq_ultra_ps_e { return [::mmfree::create_ps_zynqmp] }
        processing_system7 { return [::mmfree::create_ps_zynq7] }
        default { error "mmfree: unknown PS $MMFREE(ps)" }
    }
}

# --- the rest: kernel, interconnect, reset, interrupt, address map ------------------------------
proc ::mmfree::smartconnect {name num_si} {
    set sc [create_bd_cell -type ip -vlnv [::mmfree::ipdef smartconnect] $name]
    set_property -dict [list CONFIG.NUM_SI $num_si CONFIG.NUM_MI {1}] $sc
    return $sc
}

proc ::mmfree::create_design {} {
    global MMFREE
    variable ps_cell
    variable kernel_cell
    variable intc_cell
    variable reset_cell

    set ps [::mmfree::create_ps]
    set clk_pin $ps_cell/[dict get $MMFREE(pl_clock) ps_pin]
    set rstn_pin $ps_cell/[dict get $MMFREE(pl_clock) resetn_pin]

    # the HLS IP, exactly the VLNV the driver binds to
    set kernel [create_bd_cell -type ip -vlnv $MMFREE(kernel_vlnv) $kernel_cell]

    # reset
    set rst [create_bd_cell -type ip -vlnv [::mmfree::ipdef proc_sys_reset] $reset_cell]
    connect_bd_net [get_bd_pins $clk_pin] [get_bd_pins $reset_cell/slowest_sync_clk]
    connect_bd_net [get_bd_pins $rstn_pin] [get_bd_pins $reset_cell/ext_reset_in]
    set aresetn [get_bd_pins $reset_cell/peripheral_aresetn]

    # clocks: one domain; every PS AXI port clock on PL clock 0
    set clocked [list $kernel_cell/ap_clk $ps_cell/[dict get $MMFREE(ps_master) aclk]]
    foreach hp [concat $MMFREE(weight_hp_ports) [list $MMFREE(io_hp_port)]] {
        lappend clocked $ps_cell/[dict get $hp aclk]
    }
    set resets [list $kernel_cell/ap_rst_n]

    # control: PS master -> SmartConnect -> kernel s_axilite (+ interrupt controller)
    set use_intc [dict get $MMFREE(interrupt) controller]
    set n_ctrl [expr {$use_intc ? 2 : 1}]
    set ctrl [create_bd_cell -type ip -vlnv [::mmfree::ipdef smartconnect] sc_ctrl]
    set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI $n_ctrl] $ctrl
    connect_bd_intf_net [get_bd_intf_pins $ps_cell/[dict get $MMFREE(ps_master) port]] [get_bd_intf_pins sc_ctrl/S00_AXI]
    connect_bd_intf_net [get_bd_intf_pins sc_ctrl/M00_AXI] [get_bd_intf_pins $kernel_cell/$MMFREE(kernel_ctrl_intf)]
    lappend clocked sc_ctrl/aclk
    lappend resets sc_ctrl/aresetn

    if {$use_intc} {
        set intc [create_bd_cell -type ip -vlnv [::mmfree::ipdef axi_intc] $intc_cell]
        # edge-triggered, single output to the PS (PYNQ interrupt convention)
        set_property -dict [list CONFIG.C_IRQ_CONNECTION {1} CONFIG.C_KIND_OF_INTR {0xFFFFFFFF} \
                                 CONFIG.C_IRQ_IS_LEVEL {1}] $intc
        connect_bd_intf_net [get_bd_intf_pins sc_ctrl/M01_AXI] [get_bd_intf_pins $intc_cell/s_axi]
        connect_bd_net [get_bd_pins $kernel_cell/interrupt] [get_bd_pins $intc_cell/intr]
        connect_bd_net [get_bd_pins $intc_cell/irq] [get_bd_pins $ps_cell/[dict get $MMFREE(interrupt) ps_pin]]
        lappend clocked $intc_cell/s_axi_aclk
        lappend resets $intc_cell/s_axi_aresetn
    }

    # weight ports: m_axi_gmem_w<i> -> sc_w<i> -> HP port i
    set i 0
    foreach bundle $MMFREE(weight_bundles) hp $MMFREE(weight_hp_ports) {
        ::mmfree::smartconnect sc_w$i 1
        connect_bd_intf_net [get_bd_intf_pins $kernel_cell/m_axi_$bundle] [get_bd_intf_pins sc_w$i/S00_AXI]
        connect_bd_intf_net [get_bd_intf_pins sc_w$i/M00_AXI] [get_bd_intf_pins $ps_cell/[dict get $hp port]]
        lappend clocked sc_w$i/aclk
        lappend resets sc_w$i/aresetn
        incr i
    }

    # io + embeddings share one HP port
    ::mmfree::smartconnect sc_io [llength $MMFREE(io_bundles)]
    set s 0
    foreach bundle $MMFREE(io_bundles) {
        connect_bd_intf_net [get_bd_intf_pins $kernel_cell/m_axi_$bundle] [get_bd_intf_pins sc_io/S[format %02d $s]_AXI]
        incr s
    }
    connect_bd_intf_net [get_bd_intf_pins sc_io/M00_AXI] [get_bd_intf_pins $ps_cell/[dict get $MMFREE(io_hp_port) port]]
    lappend clocked sc_io/aclk
    lappend resets sc_io/aresetn

    foreach pin $clocked { connect_bd_net [get_bd_pins $clk_pin] [get_bd_pins $pin] }
    foreach pin $resets { connect_bd_net $aresetn [get_bd_pins $pin] }

    ::mmfree::assign_addresses
    return $kernel
}

# Address map: s_axilite and INTC at fixed bases; every m_axi space maps every DDR segment.
proc ::mmfree::assign_addresses {} {
    global MMFREE
    variable ps_cell
    variable kernel_cell
    variable intc_cell
    set master_space [get_bd_addr_spaces $ps_cell/Data]
    assign_bd_address -offset $MMFREE(ctrl_base) -range $MMFREE(addr_window) \
        -target_address_space $master_space [get_bd_addr_segs $kernel_cell/$MMFREE(kernel_ctrl_intf)/Reg] -force
    if {[dict get $MMFREE(interrupt) controller]} {
        assign_bd_address -offset $MMFREE(intc_base) -range $MMFREE(addr_window) \
            -target_address_space $master_space [get_bd_addr_segs $intc_cell/S_AXI/Reg] -force
    }
    set pairs {}
    foreach bundle $MMFREE(weight_bundles) hp $MMFREE(weight_hp_ports) { lappend pairs $bundle $hp }
    foreach bundle $MMFREE(io_bundles) { lappend pairs $bundle $MMFREE(io_hp_port) }
    foreach {bundle hp} $pairs {
        set space [get_bd_addr_spaces $kernel_cell/Data_m_axi_$bundle]
        foreach seg $MMFREE(ddr_segments) {
            set target $ps_cell/[dict get $hp intf]/[dict get $hp seg_prefix]_[dict get $seg name]
            assign_bd_address -offset [dict get $seg base] -range [dict get $seg size] \
                -target_address_space $space [get_bd_addr_segs $target] -force
        }
    }
}

# Whole block design for the board in MMFREE: create, build, validate, save.
proc ::mmfree::create_bd {design_name} {
    create_bd_design $design_name
    current_bd_design $design_name
    ::mmfree::create_design
    regenerate_bd_layout
    validate_bd_design
    save_bd_design
    return $design_name
}
