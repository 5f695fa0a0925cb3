<#
.SYNOPSIS
    Writes the module's MAML help (en-US/Diffusion.dll-Help.xml) from module/help/Diffusion.help.psd1 and the
    cmdlets' own metadata (parameter sets with -WhatIf/-Confirm, types, positions, pipeline input, default values,
    INPUTS from the pipeline parameters, OUTPUTS from [OutputType], RELATED LINKS to the cmdlets whose output this one
    takes or whose input this one gives, and about_Diffusion), in a child pwsh.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $SourcePath
)
$ErrorActionPreference = 'Stop'
$source = Join-Path $SourcePath 'Diffusion.help.psd1'
$target = Join-Path $ModulePath 'en-US/Diffusion.dll-Help.xml'
$worker = {
    param($ModulePath, $Source, $Target)
    $ErrorActionPreference = 'Stop'
    Import-Module $ModulePath
    $texts = Import-PowerShellDataFile $Source
    $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
    $cmdlets = @(Get-Command -Module Diffusion -CommandType Cmdlet | Sort-Object Name)
    # What each cmdlet takes from the pipeline and outputs, by type: for INPUTS, OUTPUTS and RELATED LINKS.
    function PipelineTypes($c) {
        @($c.Parameters.Values | Where-Object { $_.Name -notin $common -and ($_.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] -and $_.ValueFromPipeline }) } |
            ForEach-Object { $t = $_.ParameterType; if ($t.IsArray) { $t.GetElementType() } else { $t } } | Sort-Object FullName -Unique)
    }
    function OutputTypes($c) { @($c.OutputType | ForEach-Object { $_.Type } | Where-Object { $_ } | Sort-Object FullName -Unique) }
    # A parameter's default: the help text's Defaults entry, else the value a fresh cmdlet object holds.
    function DefaultText($c, $p, $t) {
        if ($t.Defaults -and $t.Defaults.ContainsKey($p.Name)) { return $t.Defaults[$p.Name] }
        if ($p.ParameterType -eq [switch]) { return 'False' }
        $attr = $p.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] }
        if ($attr | Where-Object Mandatory) { return 'None (required)' }
        $property = $c.ImplementingType.GetProperty($p.Name)
        if (-not $property) { return 'None' }
        $value = $property.GetValue([Activator]::CreateInstance($c.ImplementingType))
        if ($null -eq $value -or ($value -is [array] -and $value.Count -eq 0) -or "$value" -eq '') { return 'None' }
        if ($value -is [array]) { return $value -join ', ' }
        "$value"
    }
    function Esc([string] $s) { [System.Security.SecurityElement]::Escape($s) }
    function Para([string] $s) { "<maml:para>$(Esc $s)</maml:para>" }
    function TypeName([type] $t) {
        $u = [Nullable]::GetUnderlyingType($t)
        if ($u) { $t = $u }
        if ($t.IsArray) { return (TypeName $t.GetElementType()) + '[]' }
        $t.Name
    }
    $sb = [System.Text.StringBuilder]::new()
    $null = $sb.AppendLine('<?xml version="1.0" encoding="utf-8"?>')
    $null = $sb.AppendLine('<helpItems schema="maml" xmlns="http://msh">')
    foreach ($cmd in $cmdlets) {
        $t = $texts[$cmd.Name]
        if (-not $t) { throw "module/help/Diffusion.help.psd1 has no entry for $($cmd.Name)." }
        $verb, $noun = $cmd.Name -split '-', 2
        $null = $sb.AppendLine('<command:command xmlns:maml="http://schemas.microsoft.com/maml/2004/10" xmlns:command="http://schemas.microsoft.com/maml/dev/command/2004/10" xmlns:dev="http://schemas.microsoft.com/maml/dev/2004/10">')
        $null = $sb.AppendLine("<command:details><command:name>$($cmd.Name)</command:name><maml:description>$(Para $t.Synopsis)</maml:description><command:verb>$verb</command:verb><command:noun>$noun</command:noun></command:details>")
        $null = $sb.AppendLine("<maml:description>$(Para $t.Description)</maml:description>")
        $null = $sb.AppendLine('<command:syntax>')
        foreach ($set in $cmd.ParameterSets) {
            $null = $sb.AppendLine("<command:syntaxItem><maml:name>$($cmd.Name)</maml:name>")
            foreach ($p in $set.Parameters | Where-Object { $_.Name -notin [System.Management.Automation.PSCmdlet]::CommonParameters }) {
                $pos = if ($p.Position -ge 0) { $p.Position } else { 'named' }
                $value = if ($p.ParameterType -eq [switch]) { '' } else { "<command:parameterValue required=""true"">$(Esc (TypeName $p.ParameterType))</command:parameterValue>" }
                $null = $sb.AppendLine("<command:parameter required=""$($p.IsMandatory.ToString().ToLower())"" position=""$pos""><maml:name>$($p.Name)</maml:name>$value</command:parameter>")
            }
            $null = $sb.AppendLine('</command:syntaxItem>')
        }
        $null = $sb.AppendLine('</command:syntax><command:parameters>')
        foreach ($p in $cmd.Parameters.Values | Where-Object { $_.Name -notin [System.Management.Automation.PSCmdlet]::CommonParameters }) {
            $desc = $t.Parameters[$p.Name]
            if (-not $desc -and $p.Name -eq 'WhatIf') { $desc = 'Shows what would happen without doing it.' }
            if (-not $desc -and $p.Name -eq 'Confirm') { $desc = 'Asks for confirmation first.' }
            if (-not $desc) { throw "module/help/Diffusion.help.psd1 has no description for -$($p.Name) of $($cmd.Name)." }
            $attr = $p.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] }
            $mandatory = [bool]($attr | Where-Object Mandatory)
            $pipeline = @()
            if ($attr | Where-Object ValueFromPipeline) { $pipeline += 'ByValue' }
            if ($attr | Where-Object ValueFromPipelineByPropertyName) { $pipeline += 'ByPropertyName' }
            $pipelineText = if ($pipeline) { "true ($($pipeline -join ', '))" } else { 'false' }
            $position = ($attr | Where-Object { $_.Position -ge 0 } | Select-Object -First 1).Position
            if ($null -eq $position) { $position = 'named' }
            $null = $sb.AppendLine("<command:parameter required=""$($mandatory.ToString().ToLower())"" pipelineInput=""$pipelineText"" position=""$position""><maml:name>$($p.Name)</maml:name><maml:description>$(Para $desc)</maml:description><command:parameterValue required=""true"">$(Esc (TypeName $p.ParameterType))</command:parameterValue><dev:type><maml:name>$(Esc $p.ParameterType.FullName)</maml:name></dev:type><dev:defaultValue>$(Esc (DefaultText $cmd $p $t))</dev:defaultValue></command:parameter>")
        }
        $null = $sb.AppendLine('</command:parameters><command:inputTypes>')
        $inputs = PipelineTypes $cmd
        if (-not $inputs) { $null = $sb.AppendLine("<command:inputType><dev:type><maml:name>None</maml:name></dev:type>$("<maml:description>$(Para 'This cmdlet takes no pipeline input.')</maml:description>")</command:inputType>") }
        foreach ($i in $inputs) {
            $names = ($cmd.Parameters.Values | Where-Object { $_.Name -notin $common -and ($_.ParameterType -eq $i -or $_.ParameterType.GetElementType() -eq $i) -and ($_.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] -and $_.ValueFromPipeline }) }).Name -join ', -'
            $null = $sb.AppendLine("<command:inputType><dev:type><maml:name>$(Esc $i.FullName)</maml:name></dev:type><maml:description>$(Para "Bound to -$names.")</maml:description></command:inputType>")
        }
        $null = $sb.AppendLine('</command:inputTypes><command:returnValues>')
        $outputs = OutputTypes $cmd
        if (-not $outputs) { $null = $sb.AppendLine("<command:returnValue><dev:type><maml:name>None</maml:name></dev:type><maml:description>$(Para 'This cmdlet outputs nothing.')</maml:description></command:returnValue>") }
        foreach ($o in $outputs) { $null = $sb.AppendLine("<command:returnValue><dev:type><maml:name>$(Esc $o.FullName)</maml:name></dev:type><maml:description>$(Para '')</maml:description></command:returnValue>") }
        $null = $sb.AppendLine('</command:returnValues><command:examples>')
        $n = 0
        foreach ($e in $t.Examples) {
            $n++
            $null = $sb.AppendLine("<command:example><maml:title>-------------------------- Example $n --------------------------</maml:title><dev:code>$(Esc $e.Code)</dev:code><dev:remarks>$(Para $e.Remarks)</dev:remarks></command:example>")
        }
        $null = $sb.AppendLine('</command:examples><maml:relatedLinks>')
        # Pipeline neighbours: cmdlets whose output this one takes, or that take what this one outputs.
        $related = @($cmdlets | Where-Object {
            $_.Name -ne $cmd.Name -and (
                @(OutputTypes $_ | Where-Object { $_ -in $inputs -and $_ -ne [string] -and $_ -ne [object] }).Count -or
                @(PipelineTypes $_ | Where-Object { $_ -in $outputs -and $_ -ne [string] -and $_ -ne [object] }).Count)
        } | ForEach-Object Name) + @($t.Related | Where-Object { $_ }) | Select-Object -Unique
        foreach ($r in @($related) + 'about_Diffusion') { $null = $sb.AppendLine("<maml:navigationLink><maml:linkText>$(Esc $r)</maml:linkText><maml:uri></maml:uri></maml:navigationLink>") }
        $null = $sb.AppendLine('</maml:relatedLinks></command:command>')
    }
    $null = $sb.AppendLine('</helpItems>')
    New-Item -ItemType Directory -Force (Split-Path $Target) | Out-Null
    Set-Content -Path $Target -Value $sb.ToString() -Encoding utf8
}
$pwsh = (Get-Process -Id $PID).Path
$pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
$encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes("& { $worker } '$ModulePath' '$source' '$target'"))
& $pwsh @pwshArgs -NoProfile -NonInteractive -EncodedCommand $encoded
if ($LASTEXITCODE -ne 0) { throw "Writing the help failed (exit code $LASTEXITCODE)." }
