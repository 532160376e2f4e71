; Rendered by wvwasi.packager.formats.nsis: a per-user installer (no admin rights needed).
Unicode true
Target amd64-unicode
${compressor}
RequestExecutionLevel user

!define APP_NAME "${name}"
!define APP_VERSION "${version}"
!define APP_PUBLISHER "${publisher}"
!define APP_EXE "${exe}"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${identifier}"
!define APP_KEY "Software\${identifier}"
!define WEBVIEW2_KEY "${webview2_key}"

Name "$${APP_NAME}"
OutFile "${outfile}"
InstallDir "$$LOCALAPPDATA\Programs\${slug}"
InstallDirRegKey HKCU "$${APP_KEY}" "InstallDir"
VIProductVersion "${numeric_version}"
VIAddVersionKey "ProductName" "$${APP_NAME}"
VIAddVersionKey "ProductVersion" "$${APP_VERSION}"
VIAddVersionKey "CompanyName" "$${APP_PUBLISHER}"
VIAddVersionKey "FileVersion" "$${APP_VERSION}"
VIAddVersionKey "FileDescription" "$${APP_NAME} installer"
${uninstall_finalize}

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "FileFunc.nsh"
!define MUI_ICON "${icon}"
!define MUI_UNICON "${icon}"
!define MUI_FINISHPAGE_RUN "$$INSTDIR\$${APP_EXE}"
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

; A running program cannot be opened for writing: refuse to replace or remove the app while it
; runs (exit status 5), with a message (silent installs: only the status).
!macro REFUSE_IF_RUNNING
  $${If} $${FileExists} "$$INSTDIR\$${APP_EXE}"
    ClearErrors
    FileOpen $$0 "$$INSTDIR\$${APP_EXE}" a
    $${If} $${Errors}
      MessageBox MB_OK|MB_ICONEXCLAMATION "$${APP_NAME} is running. Close it, then try again." /SD IDOK
      SetErrorLevel 5
      Quit
    $${EndIf}
    FileClose $$0
  $${EndIf}
!macroend

; Update mode (/UPDATE: started by the app's updater, which exits next): wait until the app has
; exited, up to 60 s, before the check above refuses (docs/update.md).
!macro WAIT_FOR_EXIT_IN_UPDATE_MODE
  $${GetParameters} $$1
  ClearErrors
  $${GetOptions} $$1 "/UPDATE" $$2
  $${IfNot} $${Errors}
  $${AndIf} $${FileExists} "$$INSTDIR\$${APP_EXE}"
    StrCpy $$3 0
    $${Do}
      ClearErrors
      FileOpen $$0 "$$INSTDIR\$${APP_EXE}" a
      $${IfNot} $${Errors}
        FileClose $$0
        $${Break}
      $${EndIf}
      IntOp $$3 $$3 + 1
      $${If} $$3 >= 240
        $${Break}
      $${EndIf}
      Sleep 250
    $${Loop}
  $${EndIf}
!macroend

; WebView2: the installed runtime's version, "" if there is none.
Function WebView2Version
  ReadRegStr $$0 HKLM "SOFTWARE\WOW6432Node\Microsoft\EdgeUpdate\Clients\$${WEBVIEW2_KEY}" "pv"
  $${If} $$0 == ""
    ReadRegStr $$0 HKLM "SOFTWARE\Microsoft\EdgeUpdate\Clients\$${WEBVIEW2_KEY}" "pv"
  $${EndIf}
  $${If} $$0 == ""
    ReadRegStr $$0 HKCU "Software\Microsoft\EdgeUpdate\Clients\$${WEBVIEW2_KEY}" "pv"
  $${EndIf}
  $${If} $$0 == "0.0.0.0"
    StrCpy $$0 ""
  $${EndIf}
FunctionEnd

; First, so that a refusal or a failed WebView2 download leaves nothing installed.
Section "-Prepare"
  !insertmacro WAIT_FOR_EXIT_IN_UPDATE_MODE
  !insertmacro REFUSE_IF_RUNNING
${webview2_section}
SectionEnd

Section "-Install"
  ; Upgrade in place: the previous version's own uninstaller removes exactly its files.
  IfFileExists "$$INSTDIR\uninstall.exe" 0 +2
    ExecWait '"$$INSTDIR\uninstall.exe" /S _?=$$INSTDIR'

${install_files}
  WriteUninstaller "$$INSTDIR\uninstall.exe"
  CreateShortCut "$$SMPROGRAMS\$${APP_NAME}.lnk" "$$INSTDIR\$${APP_EXE}" "" "$$INSTDIR\app\icon.ico"
  WriteRegStr HKCU "$${APP_KEY}" "InstallDir" "$$INSTDIR"
  WriteRegStr HKCU "$${UNINSTALL_KEY}" "DisplayName" "$${APP_NAME}"
  WriteRegStr HKCU "$${UNINSTALL_KEY}" "DisplayVersion" "$${APP_VERSION}"
  WriteRegStr HKCU "$${UNINSTALL_KEY}" "Publisher" "$${APP_PUBLISHER}"
  WriteRegStr HKCU "$${UNINSTALL_KEY}" "DisplayIcon" "$$INSTDIR\app\icon.ico"
  WriteRegStr HKCU "$${UNINSTALL_KEY}" "InstallLocation" "$$INSTDIR"
  WriteRegStr HKCU "$${UNINSTALL_KEY}" "UninstallString" '"$$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "$${UNINSTALL_KEY}" "QuietUninstallString" '"$$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "$${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "$${UNINSTALL_KEY}" "NoRepair" 1
  WriteRegDWORD HKCU "$${UNINSTALL_KEY}" "EstimatedSize" ${size_kib}
${register}
SectionEnd

; Update mode: start the new version when the app asked for that before it exited
; (wvwasi.app.relaunch() makes a file `relaunch` beside this setup; docs/update.md). Its working
; folder is the app's ($$OUTDIR), not the update's, which the next check removes.
Section "-Relaunch"
  $${GetParameters} $$1
  ClearErrors
  $${GetOptions} $$1 "/UPDATE" $$2
  $${IfNot} $${Errors}
  $${AndIf} $${FileExists} "$$EXEDIR\${relaunch_flag}"
    SetOutPath "$$INSTDIR"
    Exec '"$$INSTDIR\$${APP_EXE}"'
  $${EndIf}
SectionEnd

Function un.onInit
  !insertmacro REFUSE_IF_RUNNING
FunctionEnd

Section "Uninstall"
  Delete "$$SMPROGRAMS\$${APP_NAME}.lnk"
${uninstall_files}
  Delete "$$INSTDIR\uninstall.exe"
  RMDir "$$INSTDIR"
  DeleteRegKey HKCU "$${UNINSTALL_KEY}"
  DeleteRegKey HKCU "$${APP_KEY}"
${unregister}
SectionEnd
